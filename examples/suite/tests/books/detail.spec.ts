import { test, expect } from '@playwright/test';

test.describe('book detail', () => {
  test('shows title, author, genre, price and stock', async ({ page }) => {
    const response = await page.goto('/books/tides-of-copper');
    expect(response?.status()).toBe(200);
    await expect(page).toHaveTitle('Tides of Copper · Inkwell Books');
    await expect(page.getByRole('heading', { level: 1 })).toHaveText('Tides of Copper');
    await expect(page.locator('article .author')).toHaveText('Joren Vale');
    await expect(page.getByTestId('genre')).toHaveText('fantasy');
    await expect(page.getByTestId('price')).toHaveText('$18.50');
    await expect(page.getByTestId('stock')).toHaveText('In stock (4)');
    await expect(page.getByRole('button', { name: 'Add to cart' })).toBeEnabled();
  });

  test('an out-of-stock book cannot be added to the cart', async ({ page }) => {
    await page.goto('/books/the-lantern-keeper');
    await expect(page.getByTestId('stock')).toHaveText('Out of stock');
    await expect(page.getByRole('button', { name: 'Add to cart' })).toBeDisabled();
  });

  test('the detail page links back to the list', async ({ page }) => {
    await page.goto('/books/small-engines-of-thought');
    await page.getByRole('link', { name: 'Back to all books' }).click();
    await expect(page).toHaveURL('/books');
    await expect(page.getByRole('link', { name: 'Small Engines of Thought' })).toBeVisible();
  });
});
