import { test, expect } from '@playwright/test';

test('GET /api/health reports ok', async ({ request }) => {
  const response = await request.get('/api/health');
  expect(response.status()).toBe(200);
  const body = await response.json();
  expect(body.status).toBe('ok');
  expect(body.books).toBe(8);
  expect(body.uptimeMs).toBeGreaterThan(0);
});

test('GET /api/gift-cards/:code returns the balance', async ({ request }) => {
  // The only skipped test of the suite, so that runs report a skipped count.
  test.skip(true, 'Gift cards are not launched yet: the endpoint does not exist');

  const response = await request.get('/api/gift-cards/INK-0001');
  expect(response.status()).toBe(200);
  expect((await response.json()).balanceCents).toBeGreaterThanOrEqual(0);
});
