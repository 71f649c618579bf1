import { test, expect } from '@playwright/test';

test.describe('checkout form', () => {
  test('a valid order shows a confirmation', async ({ page }) => {
    await page.goto('/checkout');
    await page.getByLabel('Name').fill('Ada <Lovelace>');
    await page.getByLabel('Email').fill('ada@example.test');
    await page.getByLabel('Book').selectOption('tides-of-copper');
    await page.getByLabel('Quantity').fill('2');

    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/checkout') && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Place order' }).click(),
    ]);
    expect(response.status()).toBe(200);

    // The name is shown as text, not interpreted as markup.
    await expect(page.getByRole('heading', { level: 1 })).toHaveText('Thank you, Ada <Lovelace>!');
    await expect(page.getByTestId('order-number')).toHaveText(/^Order #\d+$/);
    await expect(page.getByTestId('order-summary')).toHaveText('2 × Tides of Copper');
    await expect(page.getByTestId('order-total')).toHaveText('$37.00');
    await expect(page.getByTestId('order-email')).toHaveText('ada@example.test');
  });

  test('an empty form is rejected with every error listed', async ({ page }) => {
    await page.goto('/checkout');
    await page.getByLabel('Quantity').fill('');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/checkout') && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Place order' }).click(),
    ]);
    expect(response.status()).toBe(422);
    await expect(page.getByRole('alert').getByRole('listitem')).toHaveText([
      'Name is required',
      'Email must be a valid address',
      'Choose a book',
      'Quantity must be between 1 and 5',
    ]);
  });

  test('a sold-out book and a bad quantity are reported, input is kept', async ({ page }) => {
    await page.goto('/checkout');
    await page.getByLabel('Name').fill('Grace Hopper');
    await page.getByLabel('Email').fill('not-an-email');
    await page.getByLabel('Book').selectOption('the-lantern-keeper');
    await page.getByLabel('Quantity').fill('9');
    await page.getByRole('button', { name: 'Place order' }).click();

    const errors = page.getByRole('alert');
    await expect(errors).toContainText('Email must be a valid address');
    await expect(errors).toContainText('Sorry, The Lantern Keeper is out of stock');
    await expect(errors).toContainText('Quantity must be between 1 and 5');
    await expect(page.getByLabel('Name')).toHaveValue('Grace Hopper');
    await expect(page.getByLabel('Book')).toHaveValue('the-lantern-keeper');
  });

  test('the cart pre-fills the book and quantity', async ({ page }) => {
    await page.goto('/books/a-field-guide-to-clouds');
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.goto('/cart');
    await page.getByRole('link', { name: 'Go to checkout' }).click();

    await expect(page).toHaveURL('/checkout?book=a-field-guide-to-clouds&qty=2');
    await expect(page.getByLabel('Book')).toHaveValue('a-field-guide-to-clouds');
    await expect(page.getByLabel('Quantity')).toHaveValue('2');
  });
});
