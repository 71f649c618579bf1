import { test, expect } from '@playwright/test';

// The stock page asks /api/slow before it shows anything: 2000 ms by default,
// ?ms=N to change it. This is the slowest file of the suite on purpose.

test('checking stock lists every title', async ({ page }) => {
  await page.goto('/stock');
  const button = page.getByRole('button', { name: 'Check stock' });
  const status = page.getByTestId('stock-status');
  await expect(status).toHaveText('Not checked yet');

  await button.click();
  await expect(status).toHaveText('Checking the warehouse…');
  await expect(button).toBeDisabled();

  await expect(status).toHaveText(/^Checked 8 titles in \d+ ms$/, { timeout: 10_000 });
  await expect(button).toBeEnabled();
  await expect(page.getByTestId('stock-table').locator('tbody tr')).toHaveCount(8);
});

test('a sold-out title is marked as such', async ({ page }) => {
  await page.goto('/stock?ms=1500');
  await page.getByRole('button', { name: 'Check stock' }).click();
  const table = page.getByTestId('stock-table');
  await expect(table).toBeVisible({ timeout: 10_000 });
  await expect(table.locator('tr[data-book-id="the-lantern-keeper"] td').nth(1)).toHaveText('Sold out');
  await expect(table.locator('tr[data-book-id="the-silent-orchard"] td').nth(1)).toHaveText('12');
});

test('the reported time matches the warehouse delay', async ({ page }) => {
  await page.goto('/stock?ms=800');
  const status = page.getByTestId('stock-status');
  const button = page.getByRole('button', { name: 'Check stock' });

  for (let round = 1; round <= 2; round++) {
    const slowCall = page.waitForResponse((r) => r.url().includes('/api/slow?ms=800&task=stock'));
    await button.click();
    expect((await slowCall).status()).toBe(200);
    await expect(status).toHaveText(/^Checked 8 titles in \d+ ms$/);
    const reported = Number((await status.textContent())?.match(/in (\d+) ms/)?.[1]);
    expect(reported).toBeGreaterThanOrEqual(795);
  }
});
