// A script followed by WAIT on the same connection (replica durability), for reserveOrder and
// the transfer steps: WAIT cannot run inside a script, and on a Cluster a keyless WAIT alone would
// go to a random node. In one pipeline ioredis writes both to the node that owns the script's
// keys (the pipeline's first keyed command picks it), in order, so WAIT counts the replicas that
// have the script's write.
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, type ChainableCommander } from 'ioredis';
import type { RedisClient } from '../../redis/connection.ts';

/** What Redis WAIT asks for: this many replicas to acknowledge the write, waiting at most timeoutMs. */
export interface ReplicaAck {
  readonly replicas: number;
  readonly timeoutMs: number;
}

export interface Acked {
  readonly reply: unknown;
  /** Replicas that acknowledged every write sent on that connection so far (the step's included). */
  readonly acknowledgedBy: number;
}

// Replies that say the script did not run on this node: wrong node, or the cluster mid-failover.
// ioredis follows a pipeline's redirections only when its other commands are read-only, and WAIT
// is not, so they come back here. The script was refused, so sending it again is safe (a reserve's
// order id would make it a REPLAY; every transfer step is idempotent on its id).
const REDIRECTED = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/;
// About a failover's worth (2–3 s with a 1 s node timeout); after it the error goes up (a 503).
const REDIRECT_BUDGET_MS = 5_000;
const REDIRECT_RETRY_DELAY_MS = 100;

export async function runAcked(client: RedisClient, step: (pipeline: ChainableCommander) => ChainableCommander, ack: ReplicaAck): Promise<Acked> {
  const deadline = Date.now() + REDIRECT_BUDGET_MS;
  for (;;) {
    const results = await step(client.pipeline()).wait(ack.replicas, ack.timeoutMs).exec();
    const [ran, waited] = results ?? [];
    if (!ran || !waited) throw new Error('a script and WAIT pipeline came back without its replies');
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
