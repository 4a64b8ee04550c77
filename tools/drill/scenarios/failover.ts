// failover: the service on a 3-master + 3-replica Redis Cluster in REDIS_DURABILITY=replica mode
// (a 201 only once a replica has the order). Mid-rush the master holding most of the sale's keys is
// SIGKILLed; its replica is promoted. Answers meanwhile are 503 (REDIS_UNAVAILABLE while the slots
// have no master, NOT_DURABLE while the promoted master has no replica yet): retried with their
// key, they replay or make their order once the old master is back as the new one's replica. No
// 201 may be lost.
import { Redis } from 'ioredis';
import { killMaster, restartNode, startRedisCluster, waitForFailover, type RedisCluster } from '../../redis-cluster.ts';
import { finish, runDrill, startDrillStack, startRush, type DrillOptions, type Scenario } from '../drill.ts';

export const failover: Scenario = {
  name: 'failover',
  summary: 'Redis Cluster 3+3, REDIS_DURABILITY=replica: SIGKILL the master holding the sale mid-rush; no 201 lost',
  run: (options: DrillOptions) =>
    runDrill('failover', options, async (drill) => {
      drill.fault = 'the Redis Cluster master holding the sale was SIGKILLed mid-rush (REDIS_DURABILITY=replica, 3 masters + 3 replicas)';
      drill.recoveryMeaning = 'from the SIGKILL to the first new 201 once a replica was promoted and had a replica of its own again';
      const cluster = await startRedisCluster();
      drill.onCleanup(() => cluster.stop());
      const s = await startDrillStack(drill, {
        roleEnv: { REDIS_CLUSTER_NODES: cluster.seedNodes, REDIS_DURABILITY: 'replica', REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '100' },
      });
      drill.event(`Redis Cluster of ${cluster.nodes.length} nodes (${cluster.seedNodes})`);
      const rush = startRush(drill, s, { concurrency: 16 });
      await rush.waitForAccepted(300, 30_000);
      const master = await busiestMaster(cluster);
      rush.phase = 'failover';
      const killedAt = drill.event(`SIGKILL master :${master.port} (${master.keys} keys; ${rush.ledger.accepted.size} orders accepted so far)`);
      await killMaster(cluster, master.port);
      const promoted = await waitForFailover(cluster, master.port, 20_000);
      drill.event(`replica :${promoted.promoted.port} promoted (${promoted.elapsedMs} ms after the kill)`);
      drill.figures['failover: kill to promoted replica serving (ms)'] = promoted.elapsedMs;
      await restartNode(cluster, master.port);
      drill.event(`old master :${master.port} back as a replica of :${promoted.promoted.port}`);
      rush.phase = 'after';
      const firstAfter = await rush.waitForAcceptedIn('after', 30_000);
      drill.recoveryMs = firstAfter === undefined ? null : firstAfter - killedAt;
      await rush.waitForAccepted(rush.ledger.accepted.size + 200, 30_000);
      await finish(drill, s);
      const all = Object.values(rush.answersByPhase()).flatMap((counts) => Object.keys(counts));
      const unexpected = all.filter((label) => /^5\d\d/.test(label) && label !== '503 REDIS_UNAVAILABLE' && label !== '503 NOT_DURABLE');
      drill.check('no 5xx but 503 REDIS_UNAVAILABLE / NOT_DURABLE', unexpected.length === 0, unexpected.length === 0 ? 'none' : unexpected.join(', '));
    }),
};

/** The master holding the most keys: the one the sale's hot keys live on (the cluster is the drill's alone). */
async function busiestMaster(cluster: RedisCluster): Promise<{ port: number; keys: number }> {
  await cluster.refresh();
  const sizes = await Promise.all(
    cluster.masters().map(async (node) => {
      const client = new Redis({ host: '127.0.0.1', port: node.port, lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await client.connect();
        return { port: node.port, keys: await client.dbsize() };
      } finally {
        client.disconnect();
      }
    }),
  );
  return sizes.reduce((best, next) => (next.keys > best.keys ? next : best));
}
