// The ceiling: a bare Fastify app that parses the same JSON body and answers a small JSON, nothing
// else. Run as its own process (PORT from the env) so it has an event loop of its own, like the service.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/health', async () => ({ ok: true }));
app.post('/ceiling', async () => ({ ok: true }));
await app.listen({ host: '127.0.0.1', port: Number(process.env['PORT'] ?? 0) });
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
