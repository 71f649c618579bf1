import { test, expect } from '@playwright/test';

test.describe('home page', () => {
  test('shows the shop name as its heading', async ({ page }) => {
    // EXAMPLE_FAIL=1 turns this into a genuine failing assertion (the shop was
    // never called "Inkwell Bookshop"), so a run has one failed test with a
    // readable message, a screenshot and a trace.
    const expectedHeading = process.env.EXAMPLE_FAIL === '1' ? 'Inkwell Bookshop' : 'Inkwell Books';

    await page.goto('/');
    await expect(page).toHaveTitle('Home · Inkwell Books');
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(expectedHeading, { timeout: 2_000 });
    await expect(page.locator('.tagline')).toHaveText('Independent books, carefully chosen.');
  });

  test('lists the staff picks with links to their pages', async ({ page }) => {
    await page.goto('/');
    const picks = page.getByTestId('featured').getByRole('link');
    await expect(picks).toHaveText(['The Silent Orchard', 'A Field Guide to Clouds', 'The Glass Cartographer']);
    await expect(picks.first()).toHaveAttribute('href', '/books/the-silent-orchard');
  });

  test('the browse link opens the full catalogue', async ({ page }) => {
    await page.goto('/');
    await page.getByRole('link', { name: 'Browse all 8 books' }).click();
    await expect(page).toHaveURL('/books');
    await expect(page.getByRole('heading', { level: 1 })).toHaveText('Books');
    await expect(page.getByTestId('result-count')).toHaveText('8 books');
  });
});
