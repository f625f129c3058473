/**
 * Shared pieces of the JavaScript fuzz targets: the oracle (what counts as a finding) and
 * checksum fix-ups, so that mutated inputs get past the checksum checks into the parsers
 * behind them instead of being turned away at the door.
 * @module
 */

import {
  checksumAdd,
  checksumFinish,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  IP_PROTO_ICMP,
  IP_PROTO_ICMPV6,
  IP_PROTO_UDP,
  pseudoHeaderSum,
  WireError,
} from "../../../wire/mod.ts";

/** A finding: the code under test broke a promise it makes about its output. */
export class FuzzFinding extends Error {
  override name = "FuzzFinding";
}

/** Throws a {@link FuzzFinding} unless `cond` holds. */
export function expect(cond: boolean, what: string): void {
  if (!cond) throw new FuzzFinding(what);
}

/** Byte-wise equality. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const ETH_HEADER_LEN = 14;
const IPV4_MIN_HEADER_LEN = 20;
const IPV4_CHECKSUM_OFFSET = 10;
const IPV6_HEADER_LEN = 40;
const UDP_CHECKSUM_OFFSET = 6;
const ICMP_CHECKSUM_OFFSET = 2;

function setChecksum(b: Uint8Array, at: number, sum: number): void {
  b[at] = 0;
  b[at + 1] = 0;
  const c = checksumFinish(sum);
  b[at] = c >> 8;
  b[at + 1] = c & 0xff;
}

/** Fixes the IPv4 header checksum of `ip` in place; returns the header length (0: too short). */
export function fixIpv4Header(ip: Uint8Array): number {
  if (ip.length < IPV4_MIN_HEADER_LEN) return 0;
  const ihl = (ip[0] & 0x0f) * 4;
  if (ihl < IPV4_MIN_HEADER_LEN || ihl > ip.length) return 0;
  ip[IPV4_CHECKSUM_OFFSET] = 0;
  ip[IPV4_CHECKSUM_OFFSET + 1] = 0;
  setChecksum(ip, IPV4_CHECKSUM_OFFSET, checksumAdd(0, ip.subarray(0, ihl)));
  return ihl;
}

/** Fixes the checksum of a UDP, ICMP or ICMPv6 message `l4` carried between `src` and `dst`. */
export function fixL4(
  l4: Uint8Array,
  proto: number,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  const at = proto === IP_PROTO_UDP ? UDP_CHECKSUM_OFFSET : ICMP_CHECKSUM_OFFSET;
  if (l4.length < at + 2) return;
  l4[at] = 0;
  l4[at + 1] = 0;
  // ICMPv4 has no pseudo-header; UDP and ICMPv6 do.
  const base = proto === IP_PROTO_ICMP ? 0 : pseudoHeaderSum(src, dst, proto, l4.length);
  setChecksum(l4, at, checksumAdd(base, l4));
}

/** Fixes every checksum of an Ethernet frame carrying IPv4 or IPv6 with UDP/ICMP/ICMPv6. */
export function fixFrame(frame: Uint8Array): void {
  if (frame.length < ETH_HEADER_LEN) return;
  const ethertype = (frame[12] << 8) | frame[13];
  const ip = frame.subarray(ETH_HEADER_LEN);
  if (ethertype === ETHERTYPE_IPV4) {
    const ihl = fixIpv4Header(ip);
    if (ihl === 0) return;
    const total = Math.min((ip[2] << 8) | ip[3], ip.length);
    if (total <= ihl) return;
    fixL4(
      ip.subarray(ihl, total),
      ip[9],
      ip.subarray(12, 16),
      ip.subarray(16, 20),
    );
    fixIpv4Header(ip);
  } else if (ethertype === ETHERTYPE_IPV6 && ip.length >= IPV6_HEADER_LEN) {
    const next = ip[6];
    if (next !== IP_PROTO_UDP && next !== IP_PROTO_ICMPV6) return;
    const end = Math.min(IPV6_HEADER_LEN + ((ip[4] << 8) | ip[5]), ip.length);
    fixL4(
      ip.subarray(IPV6_HEADER_LEN, end),
      next,
      ip.subarray(8, 24),
      ip.subarray(24, 40),
    );
  }
}

/**
 * The parser promise every wire module makes: `parse` returns a repr or a {@link WireError}
 * and never throws; and what `emit` makes of a repr parses back to a repr that emits the same
 * bytes (emit after parse is a fixed point). Throws a {@link FuzzFinding} otherwise.
 */
export function checkRoundTrip<R>(
  what: string,
  input: Uint8Array,
  parse: (b: Uint8Array) => R | WireError,
  emit: (r: R) => Uint8Array | WireError,
): void {
  const r1 = parse(input);
  if (r1 instanceof WireError) return;
  const b1 = emit(r1);
  expect(
    !(b1 instanceof WireError),
    `${what}: emit refused what parse accepted: ${b1}`,
  );
  const r2 = parse(b1 as Uint8Array);
  expect(
    !(r2 instanceof WireError),
    `${what}: parse refused what emit made: ${r2}`,
  );
  const b2 = emit(r2 as R);
  expect(
    !(b2 instanceof WireError) && sameBytes(b1 as Uint8Array, b2),
    `${what}: emit(parse(emit(r))) differs from emit(r)`,
  );
}

/** A private copy of the input as a plain Uint8Array. Jazzer.js passes a Node Buffer, whose
 * `slice` is a view: the code under test must see the Uint8Array it sees under Deno, and
 * targets that fix checksums in place must not write into libFuzzer's input. */
export function copyInput(data: Uint8Array): Uint8Array {
  return new Uint8Array(data);
}
