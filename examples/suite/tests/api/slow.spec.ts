import { test, expect } from '@playwright/test';

// /api/slow?ms=N answers after N milliseconds, like a slow backend would.

for (const ms of [500, 1000]) {
  test(`GET /api/slow?ms=${ms} waits at least ${ms} ms`, async ({ request }) => {
    const started = Date.now();
    const response = await request.get('/api/slow', { params: { ms, task: `wait-${ms}` } });
    const elapsed = Date.now() - started;

    expect(response.status()).toBe(200);
    const body = await response.json();
    expect(body).toMatchObject({ ok: true, requestedMs: ms, task: `wait-${ms}` });
    expect(body.waitedMs).toBeGreaterThanOrEqual(ms - 5);
    expect(elapsed).toBeGreaterThanOrEqual(ms - 5);
  });
}

test('slow requests are served concurrently', async ({ request }) => {
  const started = Date.now();
  const responses = await Promise.all([
    request.get('/api/slow?ms=800'),
    request.get('/api/slow?ms=800'),
    request.get('/api/slow?ms=800'),
  ]);
  const elapsed = Date.now() - started;
  for (const response of responses) expect(response.status()).toBe(200);
  // Three 800 ms calls in parallel finish well before 3 × 800 ms.
  expect(elapsed).toBeGreaterThanOrEqual(795);
  expect(elapsed).toBeLessThan(2_300);
});

test('a bad ms value is a 400 that names the field', async ({ request }) => {
  for (const ms of ['-1', 'soon', '60000']) {
    const response = await request.get(`/api/slow?ms=${ms}`);
    expect(response.status()).toBe(400);
    expect((await response.json()).field).toBe('ms');
  }
});
