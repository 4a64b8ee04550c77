// The HTTP contract's response bodies (API.md) as the HTTP tests read them: one definition
// for every test file that parses errors, sales and orders.
export interface ErrorJson {
  statusCode: number;
  code: string;
  error: string;
  message: string;
}

export interface ItemJson {
  sku: string;
  name: string;
  unitPrice: number;
  perUserLimit: number;
  available: number;
  state: string;
}

export interface SaleJson {
  id: string;
  name: string;
  status: string;
  startsAt: string;
  endsAt: string;
  serverTime: string;
  currency: string;
  items: ItemJson[];
}

export interface OrderJson {
  orderId: string;
  saleId: string;
  sku: string;
  userId: string;
  quantity: number;
  unitPrice: number;
  amount: number;
  status: string;
  createdAt: string;
  expiresAt: string;
  paidAt?: string;
  cancelledAt?: string;
  expiredAt?: string;
}
