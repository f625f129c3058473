/**
 * The forwarding table of the shim's fast path (`ffi/fastpath.c`): which host addresses of the
 * network's other vNICs a vNIC may send to without TypeScript, with each peer's MAC, device and
 * inbound ring. Pure: the caller gives the rings' addresses.
 *
 * Only addresses whose frames the router delivers without a question go in: never the
 * gateway's, a broadcast, multicast or link-local address, or the vNIC's own (the TypeScript
 * path loops those back or answers them). The fast path is off for a family the vNIC has no
 * address of, and for IPv6 when its address is link-local (the router refuses such sources).
 *
 * The byte layout is documented in `ffi/fastpath.c`; the table is rewritten in place and grows
 * by doubling, so a topology change costs no garbage but the first time a network grows.
 *
 * @example
 * ```ts
 * const t = new FastTable();
 * t.update({ mac, gatewayMac, ipv4, ipv6: null, mtu: 1500 }, [
 *   { addr: peerIpv4, mac: peerMac, handle: 7, ringAddr: 0x7f00_0000_0000n, ringLen: 1 << 20 },
 * ]);
 * t.bytes; // handed to mvn_fwd_tx
 * ```
 * @module
 */

import {
  bytesEqual,
  IPV4_LEN,
  IPV6_LEN,
  isIpv6LinkLocal,
  isIpv6Multicast,
  MAC_LEN,
  type MacAddr,
} from "../wire/addr.ts";
import { GATEWAY_IPV4, GATEWAY_IPV6 } from "../services/context.ts";

/** Version word the shim accepts. */
const VERSION = 1;
/** Header and entry sizes (ffi/fastpath.c FWD_HEADER, FWD_ENTRY). */
export const FAST_HEADER = 64;
export const FAST_ENTRY = 48;
const FLAG_V4 = 1;
const FLAG_V6 = 2;
const OFF_FLAGS = 4;
const OFF_MTU = 8;
const OFF_COUNT = 12;
const OFF_MAC = 16;
const OFF_GW_MAC = 22;
const OFF_IPV4 = 28;
const OFF_IPV6 = 32;
const E_FAMILY = 0;
const E_HANDLE = 4;
const E_ADDR = 8;
const E_MAC = 24;
const E_RING = 32;
const E_RING_LEN = 40;
/** First class-D (multicast) octet; 255.255.255.255 is above it too. */
const IPV4_MULTICAST_FIRST = 224;

/** The sending vNIC, as the fast path checks its frames. */
export interface FastSource {
  mac: MacAddr;
  gatewayMac: MacAddr;
  /** Its address of each family, null when it has none (that family stays on the slow path). */
  ipv4: Uint8Array | null;
  ipv6: Uint8Array | null;
  /** Largest IP packet (the network's MTU). */
  mtu: number;
}

/** One host address of a peer and where its frames go. */
export interface FastPeer {
  /** 4 or 16 bytes. */
  addr: Uint8Array;
  mac: MacAddr;
  /** The peer's native device (woken after a burst). */
  handle: number;
  /** Address and length of the peer's inbound ring (a SharedArrayBuffer the caller keeps). */
  ringAddr: bigint;
  ringLen: number;
}

/** True when frames to `addr` are the router's to deliver to a peer without a question. */
export function fastEligible(addr: Uint8Array, src: FastSource): boolean {
  if (addr.length === IPV4_LEN) {
    return addr[0] !== 0 && addr[0] < IPV4_MULTICAST_FIRST && !bytesEqual(addr, GATEWAY_IPV4) &&
      !(src.ipv4 && bytesEqual(addr, src.ipv4));
  }
  if (addr.length !== IPV6_LEN) return false;
  return !isIpv6Multicast(addr) && !isIpv6LinkLocal(addr) && !bytesEqual(addr, GATEWAY_IPV6) &&
    !(src.ipv6 && bytesEqual(addr, src.ipv6));
}

/** Orders entries as the shim's binary search does: family, then the 16 address bytes. */
function compare(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** A fast-path table, rewritten in place by {@link FastTable.update}. */
export class FastTable {
  /** The encoded table (its header says how many entries are valid). */
  bytes: Uint8Array<ArrayBuffer> = new Uint8Array(FAST_HEADER);
  #view = new DataView(this.bytes.buffer);

  /** Entries in the table now. */
  get count(): number {
    return this.#view.getUint32(OFF_COUNT, true);
  }

  /** Rewrites the table for `src` and its `peers`; ineligible and duplicate addresses are left
   * out (the first of a duplicate wins, as the caller resolved it). */
  update(src: FastSource, peers: readonly FastPeer[]): void {
    const kept = peers.filter((p) => fastEligible(p.addr, src))
      .sort((a, b) => compare(a.addr, b.addr))
      .filter((p, i, all) => i === 0 || compare(all[i - 1].addr, p.addr) !== 0);
    const need = FAST_HEADER + kept.length * FAST_ENTRY;
    if (this.bytes.length < need) {
      let size = this.bytes.length;
      while (size < need) size *= 2;
      this.bytes = new Uint8Array(size);
      this.#view = new DataView(this.bytes.buffer);
    }
    const b = this.bytes;
    const v = this.#view;
    b.fill(0, 0, need);
    const v6Ok = src.ipv6 !== null && !isIpv6LinkLocal(src.ipv6);
    v.setUint32(0, VERSION, true);
    v.setUint32(OFF_FLAGS, (src.ipv4 ? FLAG_V4 : 0) | (v6Ok ? FLAG_V6 : 0), true);
    v.setUint32(OFF_MTU, src.mtu, true);
    v.setUint32(OFF_COUNT, kept.length, true);
    b.set(src.mac.subarray(0, MAC_LEN), OFF_MAC);
    b.set(src.gatewayMac.subarray(0, MAC_LEN), OFF_GW_MAC);
    if (src.ipv4) b.set(src.ipv4, OFF_IPV4);
    if (src.ipv6) b.set(src.ipv6, OFF_IPV6);
    kept.forEach((p, i) => {
      const at = FAST_HEADER + i * FAST_ENTRY;
      b[at + E_FAMILY] = p.addr.length === IPV4_LEN ? 4 : 6;
      v.setInt32(at + E_HANDLE, p.handle, true);
      b.set(p.addr, at + E_ADDR);
      b.set(p.mac.subarray(0, MAC_LEN), at + E_MAC);
      v.setBigUint64(at + E_RING, p.ringAddr, true);
      v.setBigUint64(at + E_RING_LEN, BigInt(p.ringLen), true);
    });
  }

  /** Empties the table: every frame takes the TypeScript path. */
  clear(): void {
    this.#view.setUint32(OFF_COUNT, 0, true);
  }
}
