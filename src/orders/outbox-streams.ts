// Which outbox streams the persister reads: one per stock shard of every live sale (layout 2), each
// in its shard's slot and in the persistence partition its tag names.
import type { SaleDefinition } from '../sales/sale.ts';
import { shardRefsOf } from '../sales/sale.ts';
import { shardKeys } from '../stock/keys.ts';

export interface OutboxStream {
  /** The stream's key. */
  readonly key: string;
  readonly saleId: string;
  /** The slot's tag number: names the partition (tag % PERSIST_PARTITIONS) and the stream in job ids. */
  readonly tag: number;
}

/** The partition a shard (of tag T) is persisted by. */
export function partitionOf(tag: number, partitions: number): number {
  return tag % partitions;
}

/** Every outbox stream of a sale. */
export function outboxStreamsOf(prefix: string, sale: Pick<SaleDefinition, 'id' | 'items'>): OutboxStream[] {
  return shardRefsOf(sale).map((ref) => {
    const keys = shardKeys(prefix, ref.saleId, ref.sku, ref.shard);
    return { key: keys.outbox, saleId: sale.id, tag: keys.tag };
  });
}

/**
 * The streams of the live sales. A sale's items and their K never change, so each sale's streams
 * are worked out once; only the list of live sales is asked for each time (it is cached upstream).
 */
export class LiveOutboxStreams {
  private readonly known = new Map<string, readonly OutboxStream[]>();

  constructor(
    private readonly prefix: string,
    private readonly liveSaleIds: () => Promise<readonly string[]>,
    private readonly findSale: (saleId: string) => Promise<Pick<SaleDefinition, 'id' | 'items'> | undefined>,
  ) {}

  async list(): Promise<OutboxStream[]> {
    const ids = await this.liveSaleIds();
    const live = new Set(ids);
    for (const saleId of this.known.keys()) if (!live.has(saleId)) this.known.delete(saleId);
    const streams: OutboxStream[] = [];
    for (const saleId of ids) {
      let known = this.known.get(saleId);
      if (!known) {
        const sale = await this.findSale(saleId);
        // Not in Postgres (yet): nothing can have been sold in it; asked again next time.
        if (!sale) continue;
        known = outboxStreamsOf(this.prefix, sale);
        this.known.set(saleId, known);
      }
      streams.push(...known);
    }
    return streams;
  }
}
