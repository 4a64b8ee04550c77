// Every drill scenario, by name, in the order `--scenario all` runs them.
import type { Scenario } from '../drill.ts';
import { failover } from './failover.ts';
import { killApi } from './kill-api.ts';
import { killWorker } from './kill-worker.ts';
import { paymentOutage } from './payment-outage.ts';
import { postgresOutage } from './postgres-outage.ts';
import { redisLoss } from './redis-loss.ts';
import { redisRestart } from './redis-restart.ts';

export const SCENARIOS: readonly Scenario[] = [killApi, killWorker, postgresOutage, redisRestart, redisLoss, paymentOutage, failover];

export function scenarioNamed(name: string): Scenario | undefined {
  return SCENARIOS.find((scenario) => scenario.name === name);
}
