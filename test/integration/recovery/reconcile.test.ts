// `npm run reconcile` as a process (src/cli/reconcile.ts under tsx): no drift on a healthy sale
// (exit 0), drift injected into Redis is found (exit 1, the table names it), --fix rebuilds it
// from Postgres and its second look is clean. Each run is a process (~5 s on a busy machine).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { serviceEnvironment } from '../../support/service-process.ts';
import { saleDefinition, shardOf, useRecoveryFixture } from './fixture.ts';

const run = promisify(execFile);

const env = useRecoveryFixture();

/** Runs the CLI; its exit code and output. */
async function reconcile(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli/reconcile.ts', ...args], { env: serviceEnvironment(env.ctx) });
    return { code: 0, out: stdout };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, out: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('npm run reconcile', () => {
  it('finds no drift on a healthy sale, finds injected drift, and --fix repairs it', async () => {
    const sale = saleDefinition([{ sku: 'phone', stock: 10 }, { sku: 'case', stock: 4 }]);
    await env.fx.record(sale, [
      { sku: 'phone', userId: 'u1', quantity: 2 },
      { sku: 'phone', userId: 'u2', quantity: 1, status: 'paid' },
      { sku: 'case', userId: 'u1', quantity: 1, status: 'expired' },
    ]);
    await env.fx.rebuilder.rebuild(sale.id);

    // Every live sale (this file's database holds only this one).
    const healthy = await reconcile();
    expect(healthy.code, healthy.out).toBe(0);
    expect(healthy.out).toMatch(new RegExp(`${sale.id}\\s+phone\\s+7\\s+7\\s+3\\s+3\\s+0\\s+0\\s+ok`));

    // Drift: three units appear from nowhere, and a shopper's count is lost.
    const phone = shardOf(env.redis, env.ctx.prefix, sale.id, 'phone');
    await env.redis.hincrby(phone.keys.item, 'available', 3);
    await env.redis.hdel(phone.keys.users, 'u2');
    const drifted = await reconcile('--sale', sale.id);
    expect(drifted.code, drifted.out).toBe(1);
    expect(drifted.out).toMatch(new RegExp(`${sale.id}\\s+phone\\s+10\\s+7\\s+2\\s+3\\s+1\\s+0\\s+DRIFT`));
    expect(drifted.out).toMatch(new RegExp(`${sale.id}\\s+case\\s+4\\s+4\\s+0\\s+0\\s+0\\s+0\\s+ok`));

    const fixed = await reconcile('--sale', sale.id, '--fix');
    expect(fixed.code, fixed.out).toBe(0);
    expect(fixed.out).toContain('after --fix:');
    expect(await phone.item()).toMatchObject({ available: '7' });
    expect(await phone.users()).toEqual({ u1: '2', u2: '1' });
    expect(fixed.out.split('after --fix:')[1]).toMatch(new RegExp(`${sale.id}\\s+phone\\s+7\\s+7\\s+3\\s+3\\s+0\\s+0\\s+ok`));
  });

  it('answers 2 for an unknown sale, and names it encoded (an operator may paste anything)', async () => {
    expect((await reconcile('--sale', 'no-such-sale')).code).toBe(2);
    const odd = await reconcile('--sale', 'x\u001b[2Jy');
    expect(odd.code).toBe(2);
    expect(odd.out).toContain('no sale "x\\u001b[2Jy" in Postgres');
    expect(odd.out).not.toContain('\u001b');
  });
});
