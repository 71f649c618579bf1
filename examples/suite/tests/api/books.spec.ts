import { test, expect } from '@playwright/test';

test('GET /api/books returns the whole catalogue', async ({ request }) => {
  const response = await request.get('/api/books');
  expect(response.status()).toBe(200);
  expect(response.headers()['content-type']).toContain('application/json');
  const body = await response.json();
  expect(body.count).toBe(8);
  expect(body.books).toHaveLength(8);
  for (const book of body.books) {
    expect(book).toEqual(
      expect.objectContaining({
        id: expect.any(String),
        title: expect.any(String),
        author: expect.any(String),
        priceCents: expect.any(Number),
        stock: expect.any(Number),
      }),
    );
  }
});

test('GET /api/books filters by genre, text and featured', async ({ request }) => {
  const science = await (await request.get('/api/books', { params: { genre: 'science' } })).json();
  expect(science.books.map((b: { id: string }) => b.id)).toEqual([
    'a-field-guide-to-clouds',
    'small-engines-of-thought',
  ]);

  const byText = await (await request.get('/api/books', { params: { q: 'GLASS' } })).json();
  expect(byText.count).toBe(1);
  expect(byText.books[0].title).toBe('The Glass Cartographer');

  const featured = await (await request.get('/api/books', { params: { featured: '1' } })).json();
  expect(featured.count).toBe(3);
});

test('GET /api/books/:id returns one book or a JSON 404', async ({ request }) => {
  const found = await request.get('/api/books/the-lantern-keeper');
  expect(found.ok()).toBeTruthy();
  expect(await found.json()).toMatchObject({ title: 'The Lantern Keeper', stock: 0, priceCents: 1125 });

  const missing = await request.get('/api/books/no-such-book');
  expect(missing.status()).toBe(404);
  expect(await missing.json()).toEqual({ error: 'Book not found', id: 'no-such-book' });
});
