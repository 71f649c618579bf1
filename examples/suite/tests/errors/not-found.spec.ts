import { test, expect } from '@playwright/test';

test('an unknown page answers 404 with a way back', async ({ page }) => {
  const response = await page.goto('/this/page/does-not-exist');
  expect(response?.status()).toBe(404);
  await expect(page).toHaveTitle('Page not found · Inkwell Books');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Page not found');
  await expect(page.getByTestId('missing-path')).toHaveText('/this/page/does-not-exist');

  await page.getByRole('link', { name: 'Back to the shop' }).click();
  await expect(page).toHaveURL('/');
});

test('an unknown book id is a 404 page too', async ({ page }) => {
  const response = await page.goto('/books/the-book-that-never-was');
  expect(response?.status()).toBe(404);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Page not found');
});

test('an unknown API path is a JSON 404', async ({ request }) => {
  const response = await request.get('/api/does-not-exist');
  expect(response.status()).toBe(404);
  expect(response.headers()['content-type']).toContain('application/json');
  expect(await response.json()).toEqual({ error: 'Not found', path: '/api/does-not-exist' });
});
