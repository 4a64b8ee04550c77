// The naive design to beat: every order attempt is a Postgres transaction (conditional UPDATE of
// the stock row, INSERT of the order) on a pg Pool. Same route and JWT check as the service.
// Tables naive_stock / naive_orders are created and seeded by the kit (compare.ts) beforehand.
import { createVerifier } from 'fast-jwt';
import Fastify from 'fastify';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env['DATABASE_URL'], max: 20 });
const verify = createVerifier({ key: process.env['JWT_SECRET'] ?? '', algorithms: ['HS256'], cache: 10_000 });
const app = Fastify({ logger: false });

app.get('/health', async () => ({ ok: true }));
app.post<{ Body: { sku: string; quantity: number } }>('/v1/sales/:saleId/orders', async (request, reply) => {
  let userId: string;
  try {
    userId = String((verify(request.headers.authorization?.replace(/^Bearer /, '') ?? '') as { sub: unknown }).sub);
  } catch {
    return reply.code(401).send({ statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: 'bad token' });
  }
  const { sku, quantity } = request.body;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const updated = await client.query('UPDATE naive_stock SET stock = stock - $2 WHERE sku = $1 AND stock >= $2 RETURNING stock', [sku, quantity]);
    if (updated.rowCount === 0) {
      await client.query('ROLLBACK');
      return reply.code(409).send({ statusCode: 409, code: 'SOLD_OUT', error: 'Conflict', message: 'sold out' });
    }
    const inserted = await client.query<{ id: string }>(
      'INSERT INTO naive_orders (sku, user_id, quantity) VALUES ($1, $2, $3) RETURNING id::text',
      [sku, userId, quantity],
    );
    await client.query('COMMIT');
    return reply.code(201).send({ orderId: inserted.rows[0]?.id, sku, userId, quantity });
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
});

await app.listen({ host: '127.0.0.1', port: Number(process.env['PORT'] ?? 0) });
process.once('SIGTERM', () => void app.close().then(() => pool.end()).then(() => process.exit(0)));
