// One transfer step followed by WAIT on the same connection (replica durability): WAIT cannot
// run inside a script, and on a Cluster a keyless WAIT alone would go to a random node. In one
// pipeline ioredis writes both to the node that owns the step's keys, in order, so WAIT counts
// the replicas that have the step's write.
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, type ChainableCommander } from 'ioredis';
import type { RedisClient } from '../../redis/connection.ts';
import type { ReplicaAck } from './reserve-order.ts';

export interface Acked {
  readonly reply: unknown;
  /** Replicas that acknowledged every write sent on that connection so far (the step's included). */
  readonly acknowledgedBy: number;
}

// Replies that say the script did not run on this node (ioredis leaves them to a pipeline holding
// a write): it is safe to send the step again; every transfer step is idempotent on its id anyway.
const REDIRECTED = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/;
const REDIRECT_BUDGET_MS = 5_000;
const REDIRECT_RETRY_DELAY_MS = 100;

export async function runAcked(client: RedisClient, step: (pipeline: ChainableCommander) => ChainableCommander, ack: ReplicaAck): Promise<Acked> {
  const deadline = Date.now() + REDIRECT_BUDGET_MS;
  for (;;) {
    const results = await step(client.pipeline()).wait(ack.replicas, ack.timeoutMs).exec();
    const [ran, waited] = results ?? [];
    if (!ran || !waited) throw new Error('transfer pipeline came back without its replies');
    const [error, reply] = ran;
    if (error && REDIRECTED.test(error.message) && Date.now() < deadline) {
      if (client instanceof Cluster && error.message.startsWith('MOVED')) client.refreshSlotsCache();
      await sleep(REDIRECT_RETRY_DELAY_MS);
      continue;
    }
    if (error) throw error;
    if (waited[0]) throw waited[0];
    const acknowledgedBy = waited[1];
    if (typeof acknowledgedBy !== 'number') throw new Error(`WAIT answered ${String(acknowledgedBy)}, not a replica count`);
    return { reply, acknowledgedBy };
  }
}
