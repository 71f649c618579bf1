import { test, expect } from '@playwright/test';

// The cart lives in localStorage, so every test starts with an empty one.

test('adding a book updates the cart badge', async ({ page }) => {
  await page.goto('/books/north-of-nowhere');
  await expect(page.getByTestId('cart-count')).toHaveText('0');
  await page.getByRole('button', { name: 'Add to cart' }).click();
  await expect(page.getByRole('status')).toHaveText('Added to your cart');
  await expect(page.getByTestId('cart-count')).toHaveText('1');

  // The badge survives a reload because the cart is stored in the browser.
  await page.reload();
  await expect(page.getByTestId('cart-count')).toHaveText('1');
});

test('the cart lists items, quantities and the total', async ({ page }) => {
  await page.goto('/books/bread-and-salt');
  const add = page.getByRole('button', { name: 'Add to cart' });
  await add.click();
  await add.click();
  await page.goto('/books/the-silent-orchard');
  await page.getByRole('button', { name: 'Add to cart' }).click();

  await page.getByRole('link', { name: /Cart \(3\)/ }).click();
  await expect(page).toHaveURL('/cart');
  const rows = page.getByTestId('cart-table').locator('tbody tr');
  await expect(rows).toHaveCount(2);
  await expect(rows.filter({ hasText: 'Bread and Salt' }).locator('td').nth(1)).toHaveText('2');
  await expect(rows.filter({ hasText: 'Bread and Salt' }).locator('td').nth(2)).toHaveText('$48.00');
  await expect(page.getByTestId('cart-total')).toHaveText('$62.99');
  await expect(page.getByRole('link', { name: 'Go to checkout' })).toHaveAttribute(
    'href',
    '/checkout?book=bread-and-salt&qty=2',
  );
});

test('removing the last item empties the cart', async ({ page }) => {
  await page.goto('/books/the-glass-cartographer');
  await page.getByRole('button', { name: 'Add to cart' }).click();
  await page.goto('/cart');
  await expect(page.getByTestId('cart-empty')).toBeHidden();
  await page.getByRole('button', { name: 'Remove The Glass Cartographer' }).click();
  await expect(page.getByTestId('cart-empty')).toHaveText('Your cart is empty.');
  await expect(page.getByTestId('cart-total')).toHaveText('$0.00');
  await expect(page.getByTestId('cart-count')).toHaveText('0');
});
