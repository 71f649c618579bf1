import { test, expect } from '@playwright/test';

// Generating the sales report calls /api/slow (1500 ms by default, ?ms=N
// sets it; these tests use 1000–1800 ms).

const GENRES = ['cooking', 'fantasy', 'fiction', 'mystery', 'science', 'travel'];

test('the report has one row per genre', async ({ page }) => {
  await page.goto('/reports?ms=1000');
  await expect(page.getByTestId('report-status')).toHaveText('No report yet');
  await page.getByRole('button', { name: 'Generate report' }).click();
  await expect(page.getByTestId('report-status')).toHaveText(/^Report ready: \d+ orders$/);
  await expect(page.getByTestId('report-table').locator('tbody tr td:first-child')).toHaveText(GENRES);
});

test('a new order shows up in the report', async ({ page, request }) => {
  const created = await request.post('/api/orders', {
    data: { name: 'Report Reader', email: 'reader@example.test', bookId: 'north-of-nowhere', quantity: 2 },
  });
  expect(created.status()).toBe(201);

  await page.goto('/reports?ms=1200');
  await page.getByRole('button', { name: 'Generate report' }).click();
  const travel = page.getByTestId('report-table').locator('tr[data-genre="travel"] td');
  await expect(travel.first()).toBeVisible({ timeout: 5_000 });
  // Other workers may place orders too, so check "at least" this one.
  expect(Number(await travel.nth(1).textContent())).toBeGreaterThanOrEqual(1);
  const revenue = Number((await travel.nth(2).textContent())?.replace('$', ''));
  expect(revenue).toBeGreaterThanOrEqual(32);
});

test('the button is disabled while the report is generated', async ({ page }) => {
  await page.goto('/reports?ms=3000');
  const button = page.getByRole('button', { name: 'Generate report' });
  await button.click();
  await expect(button).toBeDisabled();
  await expect(page.getByTestId('report-status')).toHaveText('Generating report…');
  // Still generating half a second later.
  await page.waitForTimeout(500);
  await expect(button).toBeDisabled();
  await expect(button).toBeEnabled({ timeout: 8_000 });
  await expect(page.getByTestId('report-table')).toBeVisible();
});
