/**
 * The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers that UDP and ICMPv6
 * include in theirs (RFC 768, RFC 8200 section 8.1).
 *
 * The running sum is a plain number of 16-bit words added without folding; it is folded only
 * at the end. Frames here are at most 64 KiB, so the sum stays far below 2^53.
 * @module
 */

import { IPV4_LEN } from "./addr.ts";

const WORD_MASK = 0xffff;

/** Adds the bytes of `data` to a running sum, as big-endian 16-bit words (odd tail padded). */
export function checksumAdd(sum: number, data: Uint8Array): number {
  const even = data.length & ~1;
  for (let i = 0; i < even; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (even !== data.length) sum += data[even] << 8;
  return sum;
}

/** Folds a running sum to 16 bits and returns its one's complement: the checksum field. */
export function checksumFinish(sum: number): number {
  while (sum > WORD_MASK) sum = (sum & WORD_MASK) + Math.floor(sum / 0x10000);
  return ~sum & WORD_MASK;
}

/** The Internet checksum of `data`. Over data that includes a correct checksum it is 0. */
export function internetChecksum(data: Uint8Array): number {
  return checksumFinish(checksumAdd(0, data));
}

/**
 * The running sum of the pseudo-header for an upper-layer protocol: IPv4 (RFC 768) when the
 * addresses are 4 bytes long, IPv6 (RFC 8200 section 8.1) when 16.
 */
export function pseudoHeaderSum(
  src: Uint8Array,
  dst: Uint8Array,
  protocol: number,
  upperLength: number,
): number {
  let sum = checksumAdd(checksumAdd(0, src), dst) + protocol;
  // IPv4 carries a 16-bit length, IPv6 a 32-bit one; both fit the same two words.
  if (src.length === IPV4_LEN) sum += upperLength & WORD_MASK;
  else sum += Math.floor(upperLength / 0x10000) + (upperLength & WORD_MASK);
  return sum;
}
