/**
 * DHCPv4 messages (RFC 2131) with the BOOTP header and the options of RFC 2132 that the
 * gateway reads or writes, plus classless static routes (RFC 3442). Only Ethernet clients
 * (htype 1, hlen 6) are supported. The `sname` and `file` fields are neither read nor written
 * (option overload, 52, is kept as an unknown option): the gateway never needs them.
 * @module
 */

import { type Cidr, IPV4_LEN, type Ipv4Addr, MAC_LEN, type MacAddr, maskAddr } from "./addr.ts";
import { read16, read32, write16, write32 } from "./bytes.ts";
import { WireError } from "./error.ts";

/** UDP port of DHCPv4 servers. */
export const DHCPV4_SERVER_PORT = 67;
/** UDP port of DHCPv4 clients. */
export const DHCPV4_CLIENT_PORT = 68;
/** BOOTP op: client to server. */
export const BOOTREQUEST = 1;
/** BOOTP op: server to client. */
export const BOOTREPLY = 2;
/** BOOTP htype of Ethernet. */
export const DHCPV4_HTYPE_ETHERNET = 1;

/** DHCP message types (option 53). */
export const DhcpMessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

/** Option codes (RFC 2132, RFC 3442). */
export const DhcpOption = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS_SERVERS: 6,
  HOST_NAME: 12,
  NTP_SERVERS: 42,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_REQUEST_LIST: 55,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

/** Fixed BOOTP header length (up to and including `file`). */
export const BOOTP_HEADER_LEN = 236;
/** Smallest DHCP message: header plus magic cookie. */
export const DHCPV4_MIN_LEN = BOOTP_HEADER_LEN + 4;
/** Emitted messages are padded to the BOOTP minimum that old relays and clients expect. */
export const BOOTP_MIN_EMIT_LEN = 300;
/** The flags bit asking the server to broadcast its reply. */
export const DHCPV4_FLAG_BROADCAST = 0x8000;

const MAGIC_COOKIE = 0x63825363;
const OP_OFF = 0;
const HTYPE_OFF = 1;
const HLEN_OFF = 2;
const HOPS_OFF = 3;
const XID_OFF = 4;
const SECS_OFF = 8;
const FLAGS_OFF = 10;
const CIADDR_OFF = 12;
const YIADDR_OFF = 16;
const SIADDR_OFF = 20;
const GIADDR_OFF = 24;
const CHADDR_OFF = 28;
const COOKIE_OFF = BOOTP_HEADER_LEN;
const OPTIONS_OFF = DHCPV4_MIN_LEN;
const MAX_OPTION_LEN = 255;
const IPV4_BITS = 32;
const BITS_PER_BYTE = 8;
const MESSAGE_TYPE_MAX = DhcpMessageType.INFORM;
const CLIENT_ID_MIN_LEN = 2;
const MAX_MESSAGE_SIZE_LEN = 2;
const U32_LEN = 4;

/** One route of option 121: traffic to `dest` goes via `router` (0.0.0.0 means on-link). */
export interface ClasslessRoute {
  dest: Cidr;
  router: Ipv4Addr;
}

/** An option this module does not decode, kept as raw bytes. */
export interface RawOption {
  code: number;
  data: Uint8Array;
}

/** The decoded options; an absent option is an absent key. */
export interface Dhcpv4Options {
  messageType?: number;
  subnetMask?: Ipv4Addr;
  routers?: Ipv4Addr[];
  dnsServers?: Ipv4Addr[];
  /** Option 12 as bytes mapped one to one onto char codes (host names are ASCII). */
  hostName?: string;
  ntpServers?: Ipv4Addr[];
  requestedIp?: Ipv4Addr;
  leaseTime?: number;
  serverId?: Ipv4Addr;
  paramRequestList?: number[];
  maxMessageSize?: number;
  renewalTime?: number;
  rebindingTime?: number;
  clientId?: Uint8Array;
  classlessRoutes?: ClasslessRoute[];
  /** Every other option, in the order first seen. */
  other?: RawOption[];
}

/** A DHCPv4 message as plain data. */
export interface Dhcpv4Repr {
  op: number;
  hops: number;
  xid: number;
  secs: number;
  broadcast: boolean;
  ciaddr: Ipv4Addr;
  yiaddr: Ipv4Addr;
  siaddr: Ipv4Addr;
  giaddr: Ipv4Addr;
  chaddr: MacAddr;
  options: Dhcpv4Options;
}

function err(kind: "truncated" | "malformed" | "unsupported", detail: string): WireError {
  return new WireError("dhcpv4", kind, detail);
}

/** Checked view over a DHCPv4 message: length, Ethernet hardware type and magic cookie. */
export class Dhcpv4Packet {
  private constructor(readonly buffer: Uint8Array) {}

  /** Wraps `buf` (the UDP payload). */
  static checked(buf: Uint8Array): Dhcpv4Packet | WireError {
    if (buf.length < DHCPV4_MIN_LEN) return err("truncated", `${buf.length} bytes, needs 240`);
    const op = buf[OP_OFF];
    if (op !== BOOTREQUEST && op !== BOOTREPLY) return err("malformed", `op ${op}`);
    if (buf[HTYPE_OFF] !== DHCPV4_HTYPE_ETHERNET || buf[HLEN_OFF] !== MAC_LEN) {
      return err("unsupported", `htype ${buf[HTYPE_OFF]} hlen ${buf[HLEN_OFF]}`);
    }
    if (read32(buf, COOKIE_OFF) !== MAGIC_COOKIE) return err("malformed", "no magic cookie");
    return new Dhcpv4Packet(buf);
  }

  /** BOOTP op. */
  get op(): number {
    return this.buffer[OP_OFF];
  }
  /** Relay hop count. */
  get hops(): number {
    return this.buffer[HOPS_OFF];
  }
  /** Transaction id. */
  get xid(): number {
    return read32(this.buffer, XID_OFF);
  }
  /** Seconds since the client began. */
  get secs(): number {
    return read16(this.buffer, SECS_OFF);
  }
  /** Flags field. */
  get flags(): number {
    return read16(this.buffer, FLAGS_OFF);
  }
  /** Client address (a view). */
  get ciaddr(): Ipv4Addr {
    return this.buffer.subarray(CIADDR_OFF, CIADDR_OFF + IPV4_LEN);
  }
  /** "Your" address (a view). */
  get yiaddr(): Ipv4Addr {
    return this.buffer.subarray(YIADDR_OFF, YIADDR_OFF + IPV4_LEN);
  }
  /** Next server address (a view). */
  get siaddr(): Ipv4Addr {
    return this.buffer.subarray(SIADDR_OFF, SIADDR_OFF + IPV4_LEN);
  }
  /** Relay agent address (a view). */
  get giaddr(): Ipv4Addr {
    return this.buffer.subarray(GIADDR_OFF, GIADDR_OFF + IPV4_LEN);
  }
  /** Client hardware address (a view of the first 6 bytes). */
  get chaddr(): MacAddr {
    return this.buffer.subarray(CHADDR_OFF, CHADDR_OFF + MAC_LEN);
  }
  /** The options area after the magic cookie (a view). */
  get options(): Uint8Array {
    return this.buffer.subarray(OPTIONS_OFF);
  }
}

/**
 * Splits the options area into code -> data, concatenating repeated codes (RFC 3396).
 * Stops at END; an area that runs out without END is accepted, as many clients omit it.
 */
function collectOptions(area: Uint8Array): Map<number, Uint8Array> | WireError {
  const parts = new Map<number, Uint8Array[]>();
  let off = 0;
  while (off < area.length) {
    const code = area[off];
    if (code === DhcpOption.END) break;
    if (code === DhcpOption.PAD) {
      off++;
      continue;
    }
    if (off + 1 >= area.length) return err("truncated", `option ${code} has no length`);
    const len = area[off + 1];
    if (off + 2 + len > area.length) return err("truncated", `option ${code} of ${len} bytes`);
    const list = parts.get(code);
    const data = area.subarray(off + 2, off + 2 + len);
    if (list) list.push(data);
    else parts.set(code, [data]);
    off += 2 + len;
  }
  const out = new Map<number, Uint8Array>();
  for (const [code, list] of parts) {
    if (list.length === 1) {
      out.set(code, list[0]);
      continue;
    }
    const joined = new Uint8Array(list.reduce((n, d) => n + d.length, 0));
    let at = 0;
    for (const d of list) {
      joined.set(d, at);
      at += d.length;
    }
    out.set(code, joined);
  }
  return out;
}

function addrList(code: number, d: Uint8Array): Ipv4Addr[] | WireError {
  if (d.length === 0 || d.length % IPV4_LEN !== 0) return badLen(code, d.length);
  const list: Ipv4Addr[] = [];
  for (let i = 0; i < d.length; i += IPV4_LEN) list.push(d.slice(i, i + IPV4_LEN));
  return list;
}

function oneAddr(code: number, d: Uint8Array): Ipv4Addr | WireError {
  return d.length === IPV4_LEN ? d.slice() : badLen(code, d.length);
}

function u32(code: number, d: Uint8Array): number | WireError {
  return d.length === U32_LEN ? read32(d, 0) : badLen(code, d.length);
}

function badLen(code: number, len: number): WireError {
  return err("malformed", `option ${code} with length ${len}`);
}

/** Decodes option 121 (RFC 3442 section 3). */
export function parseClasslessRoutes(d: Uint8Array): ClasslessRoute[] | WireError {
  const routes: ClasslessRoute[] = [];
  let off = 0;
  while (off < d.length) {
    const width = d[off];
    if (width > IPV4_BITS) return err("malformed", `classless route width ${width}`);
    const significant = Math.ceil(width / BITS_PER_BYTE);
    if (off + 1 + significant + IPV4_LEN > d.length) {
      return err("malformed", "classless route runs past the option");
    }
    const dest = new Uint8Array(IPV4_LEN);
    dest.set(d.subarray(off + 1, off + 1 + significant));
    const routerOff = off + 1 + significant;
    routes.push({
      dest: { addr: maskAddr(dest, width), prefixLen: width },
      router: d.slice(routerOff, routerOff + IPV4_LEN),
    });
    off = routerOff + IPV4_LEN;
  }
  if (routes.length === 0) return badLen(DhcpOption.CLASSLESS_ROUTES, 0);
  return routes;
}

/** Encodes option 121: per route the width, the significant octets, then the router. */
export function emitClasslessRoutes(routes: ClasslessRoute[]): Uint8Array {
  const parts: number[] = [];
  for (const r of routes) {
    const significant = Math.ceil(r.dest.prefixLen / BITS_PER_BYTE);
    parts.push(r.dest.prefixLen, ...r.dest.addr.subarray(0, significant), ...r.router);
  }
  return new Uint8Array(parts);
}

function decodeOptions(map: Map<number, Uint8Array>): Dhcpv4Options | WireError {
  const o: Dhcpv4Options = {};
  for (const [code, d] of map) {
    const e = decodeOption(o, code, d);
    if (e) return e;
  }
  return o;
}

/** Decodes one option into `o`; returns the error when its contents are malformed. */
function decodeOption(o: Dhcpv4Options, code: number, d: Uint8Array): WireError | undefined {
  switch (code) {
    case DhcpOption.MESSAGE_TYPE:
      if (d.length !== 1) return badLen(code, d.length);
      if (d[0] < DhcpMessageType.DISCOVER || d[0] > MESSAGE_TYPE_MAX) {
        return err("malformed", `message type ${d[0]}`);
      }
      o.messageType = d[0];
      return;
    case DhcpOption.SUBNET_MASK:
      return set(oneAddr(code, d), (v) => o.subnetMask = v);
    case DhcpOption.REQUESTED_IP:
      return set(oneAddr(code, d), (v) => o.requestedIp = v);
    case DhcpOption.SERVER_ID:
      return set(oneAddr(code, d), (v) => o.serverId = v);
    case DhcpOption.ROUTER:
      return set(addrList(code, d), (v) => o.routers = v);
    case DhcpOption.DNS_SERVERS:
      return set(addrList(code, d), (v) => o.dnsServers = v);
    case DhcpOption.NTP_SERVERS:
      return set(addrList(code, d), (v) => o.ntpServers = v);
    case DhcpOption.LEASE_TIME:
      return set(u32(code, d), (v) => o.leaseTime = v);
    case DhcpOption.RENEWAL_TIME:
      return set(u32(code, d), (v) => o.renewalTime = v);
    case DhcpOption.REBINDING_TIME:
      return set(u32(code, d), (v) => o.rebindingTime = v);
    case DhcpOption.CLASSLESS_ROUTES:
      return set(parseClasslessRoutes(d), (v) => o.classlessRoutes = v);
    case DhcpOption.HOST_NAME:
      if (d.length === 0) return badLen(code, 0);
      o.hostName = latin1(d);
      return;
    case DhcpOption.PARAM_REQUEST_LIST:
      if (d.length === 0) return badLen(code, 0);
      o.paramRequestList = Array.from(d);
      return;
    case DhcpOption.MAX_MESSAGE_SIZE:
      if (d.length !== MAX_MESSAGE_SIZE_LEN) return badLen(code, d.length);
      o.maxMessageSize = read16(d, 0);
      return;
    case DhcpOption.CLIENT_ID:
      if (d.length < CLIENT_ID_MIN_LEN) return badLen(code, d.length);
      o.clientId = d.slice();
      return;
    default:
      (o.other ??= []).push({ code, data: d.slice() });
      return;
  }
}

/**
 * Bytes as a string of the same char codes. A loop, not `fromCharCode(...d)`: concatenated
 * options can be tens of kilobytes, past what a spread call may take as arguments.
 */
function latin1(d: Uint8Array): string {
  let s = "";
  for (let i = 0; i < d.length; i++) s += String.fromCharCode(d[i]);
  return s;
}

/** Stores a decoded value, or passes its error on. */
function set<T>(v: T | WireError, store: (v: T) => void): WireError | undefined {
  if (v instanceof WireError) return v;
  store(v);
}

/** Parses a DHCPv4 message (the UDP payload). */
export function parseDhcpv4(buf: Uint8Array): Dhcpv4Repr | WireError {
  const p = Dhcpv4Packet.checked(buf);
  if (p instanceof WireError) return p;
  const map = collectOptions(p.options);
  if (map instanceof WireError) return map;
  const options = decodeOptions(map);
  if (options instanceof WireError) return options;
  return {
    op: p.op,
    hops: p.hops,
    xid: p.xid,
    secs: p.secs,
    broadcast: (p.flags & DHCPV4_FLAG_BROADCAST) !== 0,
    ciaddr: p.ciaddr.slice(),
    yiaddr: p.yiaddr.slice(),
    siaddr: p.siaddr.slice(),
    giaddr: p.giaddr.slice(),
    chaddr: p.chaddr.slice(),
    options,
  };
}

function concatAddrs(list: Ipv4Addr[]): Uint8Array {
  const out = new Uint8Array(list.length * IPV4_LEN);
  list.forEach((a, i) => out.set(a, i * IPV4_LEN));
  return out;
}

function u32Bytes(v: number): Uint8Array {
  const out = new Uint8Array(U32_LEN);
  write32(out, 0, v);
  return out;
}

/** The options in emission order: message type first, as clients and RFC 2131 expect. */
function encodeOptions(o: Dhcpv4Options): RawOption[] {
  const list: RawOption[] = [];
  const add = (code: number, data: Uint8Array | undefined) => {
    if (data !== undefined) list.push({ code, data });
  };
  const num = (v: number | undefined) => v === undefined ? undefined : u32Bytes(v);
  const addrs = (v: Ipv4Addr[] | undefined) => v === undefined ? undefined : concatAddrs(v);
  add(
    DhcpOption.MESSAGE_TYPE,
    o.messageType === undefined ? undefined : new Uint8Array([o.messageType]),
  );
  add(DhcpOption.SERVER_ID, o.serverId);
  add(DhcpOption.LEASE_TIME, num(o.leaseTime));
  add(DhcpOption.RENEWAL_TIME, num(o.renewalTime));
  add(DhcpOption.REBINDING_TIME, num(o.rebindingTime));
  add(DhcpOption.SUBNET_MASK, o.subnetMask);
  add(DhcpOption.ROUTER, addrs(o.routers));
  add(DhcpOption.DNS_SERVERS, addrs(o.dnsServers));
  add(
    DhcpOption.HOST_NAME,
    o.hostName === undefined
      ? undefined
      : Uint8Array.from(o.hostName, (c) => c.charCodeAt(0) & 0xff),
  );
  add(DhcpOption.NTP_SERVERS, addrs(o.ntpServers));
  add(DhcpOption.REQUESTED_IP, o.requestedIp);
  add(
    DhcpOption.PARAM_REQUEST_LIST,
    o.paramRequestList === undefined ? undefined : Uint8Array.from(o.paramRequestList),
  );
  if (o.maxMessageSize !== undefined) {
    const d = new Uint8Array(MAX_MESSAGE_SIZE_LEN);
    write16(d, 0, o.maxMessageSize);
    add(DhcpOption.MAX_MESSAGE_SIZE, d);
  }
  add(DhcpOption.CLIENT_ID, o.clientId);
  add(
    DhcpOption.CLASSLESS_ROUTES,
    o.classlessRoutes === undefined ? undefined : emitClasslessRoutes(o.classlessRoutes),
  );
  for (const r of o.other ?? []) list.push(r);
  return list;
}

/**
 * Emits a message, padded to {@link BOOTP_MIN_EMIT_LEN}. An option longer than 255 bytes is
 * split into consecutive instances (RFC 3396).
 */
export function emitDhcpv4(r: Dhcpv4Repr): Uint8Array {
  const opts = encodeOptions(r.options);
  let optLen = 1; // END
  for (const o of opts) {
    const chunks = Math.max(1, Math.ceil(o.data.length / MAX_OPTION_LEN));
    optLen += 2 * chunks + o.data.length;
  }
  const out = new Uint8Array(Math.max(BOOTP_MIN_EMIT_LEN, OPTIONS_OFF + optLen));
  out[OP_OFF] = r.op;
  out[HTYPE_OFF] = DHCPV4_HTYPE_ETHERNET;
  out[HLEN_OFF] = MAC_LEN;
  out[HOPS_OFF] = r.hops;
  write32(out, XID_OFF, r.xid);
  write16(out, SECS_OFF, r.secs);
  write16(out, FLAGS_OFF, r.broadcast ? DHCPV4_FLAG_BROADCAST : 0);
  out.set(r.ciaddr, CIADDR_OFF);
  out.set(r.yiaddr, YIADDR_OFF);
  out.set(r.siaddr, SIADDR_OFF);
  out.set(r.giaddr, GIADDR_OFF);
  out.set(r.chaddr, CHADDR_OFF);
  write32(out, COOKIE_OFF, MAGIC_COOKIE);
  let off = OPTIONS_OFF;
  for (const o of opts) {
    let at = 0;
    do {
      const n = Math.min(MAX_OPTION_LEN, o.data.length - at);
      out[off] = o.code;
      out[off + 1] = n;
      out.set(o.data.subarray(at, at + n), off + 2);
      off += 2 + n;
      at += n;
    } while (at < o.data.length);
  }
  out[off] = DhcpOption.END;
  return out;
}
