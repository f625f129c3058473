/**
 * Address and MAC allocation: pure functions over what is already taken, with the randomness
 * injected so tests can drive them.
 *
 * - IPv4: the lowest free host address of the subnet (network and broadcast skipped), so
 *   addresses are predictable and a small subnet fills densely.
 * - IPv6: a random interface id drawn from the *whole* host part of the prefix (so a /64
 *   hands out any of its 2^64 addresses, never a first slice), retried on collision. The
 *   all-zero interface id (subnet-router anycast) and the top 128 ids (reserved anycast,
 *   RFC 2526) are never handed out.
 * - MAC: `02:` followed by five random bytes: the locally administered bit set, the
 *   multicast bit clear, and visibly not a vendor OUI. Uniqueness is the store's job
 *   (UNIQUE column, retried).
 * @module
 */

import { type Cidr, hostMask } from "./validate.ts";

/** A source of random bytes (crypto.getRandomValues in production). */
export type RandomBytes = (n: number) => Uint8Array;

/** Cryptographic randomness: ids and MACs must not repeat across restarts. */
export const cryptoRandom: RandomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));

/** How many random IPv6 draws before giving up (each collides with odds used/2^64). */
export const IPV6_ATTEMPTS = 64;
/** Reserved anycast interface ids at the top of a prefix (RFC 2526). */
const IPV6_RESERVED_TOP = 128n;

/** Lowest free IPv4 host address of `subnet`, or null when the subnet is full. */
export function lowestFreeIpv4(subnet: Cidr, used: ReadonlySet<bigint>): bigint | null {
  const broadcast = subnet.address | hostMask(4, subnet.prefixLength);
  for (let a = subnet.address + 1n; a < broadcast; a++) {
    if (!used.has(a)) return a;
  }
  return null;
}

function randomBigint(bits: number, random: RandomBytes): bigint {
  const bytes = random(Math.ceil(bits / 8));
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v & ((1n << BigInt(bits)) - 1n);
}

/** A random free IPv6 address of `prefix`, or null after {@link IPV6_ATTEMPTS} collisions. */
export function randomFreeIpv6(
  prefix: Cidr,
  isUsed: (addr: bigint) => boolean,
  random: RandomBytes,
): bigint | null {
  const bits = 128 - prefix.prefixLength;
  const top = hostMask(6, prefix.prefixLength);
  for (let i = 0; i < IPV6_ATTEMPTS; i++) {
    const host = randomBigint(bits, random);
    if (host === 0n || host > top - IPV6_RESERVED_TOP) continue;
    const addr = prefix.address | host;
    if (!isUsed(addr)) return addr;
  }
  return null;
}

/** A random locally administered unicast MAC: `02:xx:xx:xx:xx:xx`. */
export function randomMac(random: RandomBytes): string {
  const tail = Array.from(random(5), (b) => b.toString(16).padStart(2, "0"));
  return ["02", ...tail].join(":");
}
