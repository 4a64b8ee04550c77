// What an item's key is named after, for the operator's item switches.
export interface ItemKeys {
  readonly saleId: string;
  readonly sku: string;
}
