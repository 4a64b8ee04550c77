// HS256 bearer tokens as the service verifies them (sub = user id, role admin for operators),
// minted for tests, the load kit, the demo and the benchmark.
import { createSigner } from 'fast-jwt';

export type Tokens = ReturnType<typeof tokens>;

export function tokens(secret: string) {
  const sign = createSigner({ key: secret, algorithm: 'HS256' });
  return {
    shopper: (userId: string) => `Bearer ${sign({ sub: userId })}`,
    admin: (userId = 'ops') => `Bearer ${sign({ sub: userId, role: 'admin' })}`,
    sign: (claims: Record<string, unknown>) => `Bearer ${sign(claims)}`,
  };
}
