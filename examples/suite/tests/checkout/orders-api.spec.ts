import { test, expect } from '@playwright/test';

test.describe('orders API', () => {
  test('POST /api/orders creates an order that can be read back', async ({ request }) => {
    const created = await request.post('/api/orders', {
      data: { name: 'Alan Turing', email: 'alan@example.test', bookId: 'bread-and-salt', quantity: 3 },
    });
    expect(created.status()).toBe(201);
    const order = await created.json();
    expect(order).toMatchObject({
      bookId: 'bread-and-salt',
      title: 'Bread and Salt',
      quantity: 3,
      totalCents: 7200,
      total: '$72.00',
      status: 'confirmed',
    });
    expect(created.headers()['location']).toBe(`/api/orders/${order.id}`);

    const fetched = await request.get(`/api/orders/${order.id}`);
    expect(fetched.ok()).toBeTruthy();
    expect(await fetched.json()).toEqual(order);
  });

  test('an invalid order is refused with the field named', async ({ request }) => {
    const response = await request.post('/api/orders', {
      data: { name: 'Alan Turing', email: 'alan@example.test', bookId: 'tides-of-copper', quantity: 0 },
    });
    expect(response.status()).toBe(400);
    const body = await response.json();
    expect(body.field).toBe('quantity');
    expect(body.error).toBe('Quantity must be between 1 and 5');

    const tooMany = await request.post('/api/orders', {
      data: { name: 'Alan Turing', email: 'alan@example.test', bookId: 'small-engines-of-thought', quantity: 4 },
    });
    expect(tooMany.status()).toBe(400);
    expect(await tooMany.json()).toMatchObject({ field: 'quantity', error: 'Only 3 left in stock' });
  });

  test('orders must be JSON and unknown orders are 404', async ({ request }) => {
    const form = await request.post('/api/orders', { form: { name: 'x' } });
    expect(form.status()).toBe(415);

    const missing = await request.get('/api/orders/999999');
    expect(missing.status()).toBe(404);
    expect(await missing.json()).toEqual({ error: 'Order not found', id: 999999 });
  });
});
