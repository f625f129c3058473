/**
 * A vhost-user frontend written for tests: it plays the VMM and the guest driver at once.
 * Guest RAM is memfd memory (split in regions, so buffers can straddle them), the split
 * rings live in it, and the control messages go over a real Unix socket to the backend.
 *
 * When the backend runs in the same thread, pass `pump` (usually `() => device.service()`):
 * the frontend calls it after each message so the backend can answer. When the backend runs
 * in a Worker, leave it out.
 * @module
 */

import { check, cString, nativeTest } from "../../ffi/binding.ts";
import {
  bit,
  decodeHeader,
  encodeMessage,
  Feature,
  FLAG_NEED_REPLY,
  HEADER_SIZE,
  type MemoryRegion,
  memRegionPayload,
  memTablePayload,
  ProtocolFeature,
  Request,
  u64Payload,
  vringAddrPayload,
  vringFilePayload,
  vringStatePayload,
} from "../../vhost/protocol.ts";

/** Virtio descriptor flags. */
export const DESC_F_NEXT = 1;
export const DESC_F_WRITE = 2;
export const DESC_F_INDIRECT = 4;
/** Queue indices of virtio-net. */
export const RXQ = 0;
export const TXQ = 1;
const REPLY_TIMEOUT_MS = 3000;
/** Where the frontend pretends its guest RAM is mapped: rings are given in this space. */
const UVA_BASE = 0x7f00_0000_0000n;

/** One memfd-backed region of guest RAM. */
export class GuestRegion {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  constructor(
    readonly fd: number,
    readonly gpa: number,
    readonly size: number,
    readonly uva: bigint,
    private readonly ptr: Deno.PointerObject,
  ) {
    const ab = Deno.UnsafePointerView.getArrayBuffer(ptr, size);
    this.bytes = new Uint8Array(ab);
    this.view = new DataView(ab);
  }

  /** The region as SET_MEM_TABLE / ADD_MEM_REG describe it. */
  describe(): MemoryRegion {
    return {
      guestPhysAddr: BigInt(this.gpa),
      memorySize: BigInt(this.size),
      userspaceAddr: this.uva,
      mmapOffset: 0n,
    };
  }

  /** Unmaps and closes. */
  release(): void {
    nativeTest().mvn_test_munmap(this.ptr, BigInt(this.size));
    nativeTest().mvn_test_close(this.fd);
  }
}

/** Guest RAM: consecutive regions from guest-physical 0. */
export class GuestMemory {
  readonly regions: GuestRegion[] = [];

  /** `count` regions of `regionSize` bytes each, contiguous in guest-physical space. */
  constructor(count: number, readonly regionSize: number) {
    for (let i = 0; i < count; i++) {
      this.regions.push(this.#makeRegion(i * regionSize, regionSize, i));
    }
  }

  #makeRegion(gpa: number, size: number, i: number): GuestRegion {
    const t = nativeTest();
    const fd = check(t.mvn_test_memfd(BigInt(size)), "memfd");
    const ptr = t.mvn_test_mmap(fd, BigInt(size));
    if (ptr === null) throw new Error("mmap of test guest memory failed");
    // Regions sit 256 MiB apart in the fake VMM address space, so a backend mixing up
    // GPA and UVA or region offsets fails loudly.
    return new GuestRegion(fd, gpa, size, UVA_BASE + BigInt(gpa) + BigInt(i) * 0x1000_0000n, ptr);
  }

  /** Appends a region `gap` bytes after the last one (for ADD_MEM_REG). */
  grow(size: number, gap = 0): GuestRegion {
    const last = this.regions[this.regions.length - 1];
    const r = this.#makeRegion(last.gpa + last.size + gap, size, this.regions.length);
    this.regions.push(r);
    return r;
  }

  get size(): number {
    return this.regions.reduce((a, r) => a + r.size, 0);
  }

  #at(gpa: number): { r: GuestRegion; off: number } {
    const r = this.regions.find((x) => gpa >= x.gpa && gpa < x.gpa + x.size);
    if (!r) throw new RangeError(`guest address 0x${gpa.toString(16)} is not in guest RAM`);
    return { r, off: gpa - r.gpa };
  }

  /** The frontend-virtual address of a guest-physical one. */
  uva(gpa: number): bigint {
    const { r, off } = this.#at(gpa);
    return r.uva + BigInt(off);
  }

  write(gpa: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const { r, off } = this.#at(gpa + done);
      const n = Math.min(data.length - done, r.size - off);
      r.bytes.set(data.subarray(done, done + n), off);
      done += n;
    }
  }

  read(gpa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const { r, off } = this.#at(gpa + done);
      const n = Math.min(len - done, r.size - off);
      out.set(r.bytes.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  u16(gpa: number): number {
    const { r, off } = this.#at(gpa);
    return r.view.getUint16(off, true);
  }
  setU16(gpa: number, v: number): void {
    const { r, off } = this.#at(gpa);
    r.view.setUint16(off, v, true);
  }
  u32(gpa: number): number {
    const { r, off } = this.#at(gpa);
    return r.view.getUint32(off, true);
  }

  release(): void {
    for (const r of this.regions) r.release();
  }
}

/** A descriptor as the driver writes it. */
export interface Desc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

/** A buffer of a chain: guest address, length, and whether the device writes it. */
export interface Seg {
  addr: number;
  len: number;
  write: boolean;
}

/** The driver side of one split virtqueue in guest memory. */
export class DriverRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  availIdx = 0;
  lastUsed = 0;
  #free: number[] = [];
  /** Segments of each outstanding head, to read RX data back. */
  readonly chains = new Map<number, Seg[]>();

  constructor(readonly mem: GuestMemory, readonly base: number, readonly num: number) {
    this.desc = base;
    this.avail = base + 16 * num;
    this.used = align(this.avail + 6 + 2 * num, 4);
    this.reset();
  }

  /** Bytes the ring occupies from its base. */
  static bytes(num: number): number {
    return align(16 * num + 6 + 2 * num, 4) + 6 + 8 * num;
  }

  /** Zeroes the ring and frees every descriptor (a driver reset). */
  reset(): void {
    this.mem.write(this.base, new Uint8Array(this.used + 6 + 8 * this.num - this.base));
    this.availIdx = 0;
    this.lastUsed = 0;
    this.#free = Array.from({ length: this.num }, (_, i) => i);
    this.chains.clear();
  }

  writeDesc(i: number, d: Desc): void {
    writeDescAt(this.mem, this.desc + 16 * i, d);
  }

  /** Takes `n` free descriptor indices. */
  alloc(n: number): number[] {
    if (this.#free.length < n) {
      throw new Error(`ring has ${this.#free.length} free descriptors, need ${n}`);
    }
    return this.#free.splice(0, n);
  }

  /** Writes a chain of direct descriptors and makes it available; returns its head. */
  addChain(segs: Seg[]): number {
    const ids = this.alloc(segs.length);
    segs.forEach((s, k) =>
      this.writeDesc(ids[k], {
        addr: s.addr,
        len: s.len,
        flags: (s.write ? DESC_F_WRITE : 0) | (k + 1 < segs.length ? DESC_F_NEXT : 0),
        next: k + 1 < segs.length ? ids[k + 1] : 0,
      })
    );
    this.chains.set(ids[0], segs);
    this.publish(ids[0]);
    return ids[0];
  }

  /** Writes the segments as an indirect table at `table` and one descriptor pointing to it. */
  addIndirect(segs: Seg[], table: number): number {
    segs.forEach((s, k) =>
      writeDescAt(this.mem, table + 16 * k, {
        addr: s.addr,
        len: s.len,
        flags: (s.write ? DESC_F_WRITE : 0) | (k + 1 < segs.length ? DESC_F_NEXT : 0),
        next: k + 1 < segs.length ? k + 1 : 0,
      })
    );
    const [head] = this.alloc(1);
    this.writeDesc(head, { addr: table, len: 16 * segs.length, flags: DESC_F_INDIRECT, next: 0 });
    this.chains.set(head, segs);
    this.publish(head);
    return head;
  }

  /** Puts head into the avail ring and bumps avail->idx. */
  publish(head: number): void {
    this.mem.setU16(this.avail + 4 + 2 * (this.availIdx % this.num), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.setU16(this.avail + 2, this.availIdx);
  }

  /** Writes avail->idx directly (hostile tests). */
  setAvailIdx(idx: number): void {
    this.mem.setU16(this.avail + 2, idx & 0xffff);
  }

  /** used->idx as the device published it. */
  usedIdx(): number {
    return this.mem.u16(this.used + 2);
  }

  /** used_event (driver -> device, EVENT_IDX). */
  setUsedEvent(v: number): void {
    this.mem.setU16(this.avail + 4 + 2 * this.num, v);
  }

  /** avail_event (device -> driver, EVENT_IDX). */
  availEvent(): number {
    return this.mem.u16(this.used + 4 + 8 * this.num);
  }

  /** New used entries since the last call; their descriptors return to the free list. */
  takeUsed(): { id: number; len: number; segs: Seg[] }[] {
    const out = [];
    const idx = this.usedIdx();
    while (this.lastUsed !== idx) {
      const e = this.used + 4 + 8 * (this.lastUsed % this.num);
      const id = this.mem.u32(e);
      const len = this.mem.u32(e + 4);
      const segs = this.chains.get(id) ?? [];
      this.chains.delete(id);
      this.#releaseChain(id);
      out.push({ id, len, segs });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  #releaseChain(head: number): void {
    // Direct chains: follow NEXT to give every descriptor back; bounded by num.
    let i = head;
    for (let n = 0; n < this.num; n++) {
      if (!this.#free.includes(i)) this.#free.push(i);
      const flags = this.mem.u16(this.desc + 16 * i + 12);
      if ((flags & DESC_F_NEXT) === 0) return;
      i = this.mem.u16(this.desc + 16 * i + 14) % this.num;
    }
  }
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Writes one 16-byte descriptor at a guest address. */
export function writeDescAt(mem: GuestMemory, gpa: number, d: Desc): void {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(d.addr), true);
  v.setUint32(8, d.len, true);
  v.setUint16(12, d.flags, true);
  v.setUint16(14, d.next, true);
  mem.write(gpa, b);
}

/** What the frontend negotiates. */
export interface Negotiation {
  /** Virtio features to accept (masked with what the backend offers). */
  features: bigint;
  /** Protocol features to accept; ignored unless PROTOCOL_FEATURES is in `features`. */
  protocolFeatures?: bigint;
  /** Queue size of both rings (default 256). */
  queueSize?: number;
}

/** Options of {@link Frontend.connect}. */
export interface FrontendOptions {
  socketPath: string;
  /** Called after each message so an in-thread backend handles it. */
  pump?: () => void;
  /** Guest RAM: regions x size (default 2 x 1 MiB). */
  regions?: number;
  regionSize?: number;
}

/** A frontend connected to a backend socket. */
export class Frontend {
  readonly mem: GuestMemory;
  rings: DriverRing[] = [];
  kick: number[] = [];
  call: number[] = [];
  features = 0n;
  protocolFeatures = 0n;
  #heap = 0x20000;
  #backendChannel = -1;
  #closed = false;

  private constructor(readonly fd: number, readonly opts: FrontendOptions) {
    this.mem = new GuestMemory(opts.regions ?? 2, opts.regionSize ?? 0x100000);
  }

  /** Connects to the backend's socket. */
  static connect(opts: FrontendOptions): Frontend {
    const fd = check(nativeTest().mvn_test_connect(cString(opts.socketPath)), "connect");
    const fe = new Frontend(fd, opts);
    fe.opts.pump?.();
    return fe;
  }

  /** Size of the virtio-net header the negotiated features call for. */
  get hdrLen(): number {
    return (this.features & (bit(Feature.VERSION_1) | bit(Feature.NET_MRG_RXBUF))) !== 0n ? 12 : 10;
  }

  /** Takes `len` bytes of guest RAM for buffers (bump allocation, 16-byte aligned). */
  allocGuest(len: number): number {
    // Wrap before handing out a buffer that would run past the end of guest RAM.
    if (align(this.#heap + len, 16) > this.mem.size) this.#heap = 0x20000;
    const a = this.#heap;
    this.#heap = align(this.#heap + len, 16);
    return a;
  }

  /** Sends a raw message (header + payload) with fds; no reply is read. */
  sendRaw(bytes: Uint8Array, fds: number[] = []): void {
    const f = new Int32Array(fds.length || 1);
    f.set(fds);
    check(
      nativeTest().mvn_test_send(
        this.fd,
        bytes as Uint8Array<ArrayBuffer>,
        bytes.length,
        f,
        fds.length,
      ),
      "send",
    );
    this.opts.pump?.();
  }

  /** Sends a request; reads and returns the reply payload when `reply` is set, or when
   * REPLY_ACK is negotiated and `needReply` is set (then the u64 ack). */
  request(
    req: number,
    payload: Uint8Array = new Uint8Array(0),
    opts: { fds?: number[]; reply?: boolean; needReply?: boolean } = {},
  ): Uint8Array | undefined {
    const ackable = opts.needReply === true &&
      (this.protocolFeatures & bit(ProtocolFeature.REPLY_ACK)) !== 0n;
    this.sendRaw(encodeMessage(req, ackable ? FLAG_NEED_REPLY : 0, payload), opts.fds);
    if (!opts.reply && !ackable) return undefined;
    return this.readReply(req);
  }

  /** Reads one reply to `req`. */
  readReply(req: number): Uint8Array {
    const t = nativeTest();
    const hdr = new Uint8Array(HEADER_SIZE);
    check(t.mvn_test_recv(this.fd, hdr, HEADER_SIZE, REPLY_TIMEOUT_MS), "reply header");
    const h = decodeHeader(hdr);
    if (h.request !== req) throw new Error(`reply to request ${h.request}, expected ${req}`);
    const body = new Uint8Array(h.size);
    if (h.size > 0) check(t.mvn_test_recv(this.fd, body, h.size, REPLY_TIMEOUT_MS), "reply body");
    return body;
  }

  /** A request whose reply is a u64. */
  requestU64(req: number, payload?: Uint8Array): bigint {
    const r = this.request(req, payload, { reply: true })!;
    return new DataView(r.buffer).getBigUint64(0, true);
  }

  /** A request answered by a REPLY_ACK (needs REPLY_ACK negotiated); returns the ack value. */
  requestAck(req: number, payload: Uint8Array, fds: number[] = []): bigint {
    const r = this.request(req, payload, { fds, needReply: true });
    if (!r) throw new Error("REPLY_ACK not negotiated");
    return new DataView(r.buffer).getBigUint64(0, true);
  }

  /** The whole setup a VMM does, up to a running device. */
  negotiate(n: Negotiation): void {
    const offered = this.requestU64(Request.GET_FEATURES);
    this.features = offered & n.features;
    if ((this.features & bit(Feature.PROTOCOL_FEATURES)) !== 0n) {
      const pOffered = this.requestU64(Request.GET_PROTOCOL_FEATURES);
      this.protocolFeatures = pOffered & (n.protocolFeatures ?? 0n);
      this.request(Request.SET_PROTOCOL_FEATURES, u64Payload(this.protocolFeatures));
    }
    this.request(Request.SET_OWNER);
    this.request(Request.SET_FEATURES, u64Payload(this.features), { needReply: true });
    this.setMemTable();
    const num = n.queueSize ?? 256;
    this.rings = [
      new DriverRing(this.mem, 0x1000, num),
      new DriverRing(this.mem, 0x1000 + align(DriverRing.bytes(num), 0x1000), num),
    ];
    for (const q of [RXQ, TXQ]) this.startRing(q);
    if ((this.protocolFeatures & bit(ProtocolFeature.STATUS)) !== 0n) {
      this.request(Request.SET_STATUS, u64Payload(0xfn), { needReply: true });
    }
  }

  /** SET_MEM_TABLE with every region. */
  setMemTable(): void {
    const regions = this.mem.regions;
    this.request(Request.SET_MEM_TABLE, memTablePayload(regions.map((r) => r.describe())), {
      fds: regions.map((r) => r.fd),
      needReply: true,
    });
  }

  /** SET_VRING_NUM/BASE/ADDR/KICK/CALL(/ENABLE) for queue q, from ring state 0. */
  startRing(q: number, base = 0): void {
    const r = this.rings[q];
    const t = nativeTest();
    this.request(Request.SET_VRING_NUM, vringStatePayload(q, r.num));
    this.request(Request.SET_VRING_BASE, vringStatePayload(q, base));
    this.request(
      Request.SET_VRING_ADDR,
      vringAddrPayload(q, {
        desc: this.mem.uva(r.desc),
        avail: this.mem.uva(r.avail),
        used: this.mem.uva(r.used),
      }),
      { needReply: true },
    );
    if (this.kick[q] === undefined) this.kick[q] = check(t.mvn_test_eventfd(), "eventfd");
    if (this.call[q] === undefined) this.call[q] = check(t.mvn_test_eventfd(), "eventfd");
    this.request(Request.SET_VRING_KICK, vringFilePayload(q, false), { fds: [this.kick[q]] });
    this.request(Request.SET_VRING_CALL, vringFilePayload(q, false), { fds: [this.call[q]] });
    if ((this.features & bit(Feature.PROTOCOL_FEATURES)) !== 0n) {
      this.request(Request.SET_VRING_ENABLE, vringStatePayload(q, 1));
    }
  }

  /** GET_VRING_BASE: stops queue q, returns its next avail index. */
  stopRing(q: number): number {
    const r = this.request(Request.GET_VRING_BASE, vringStatePayload(q, 0), { reply: true })!;
    return new DataView(r.buffer).getUint32(4, true);
  }

  /** ADD_MEM_REG for one region. */
  addRegion(r: GuestRegion): bigint {
    return this.requestAck(Request.ADD_MEM_REG, memRegionPayload(r.describe()), [r.fd]);
  }

  /** REM_MEM_REG for one region. */
  removeRegion(r: GuestRegion): bigint {
    return this.requestAck(Request.REM_MEM_REG, memRegionPayload(r.describe()));
  }

  /** Gives the backend a channel for its own requests (SET_BACKEND_REQ_FD). */
  openBackendChannel(): void {
    const pair = new Int32Array(2);
    check(nativeTest().mvn_test_socketpair(pair), "socketpair");
    this.request(Request.SET_BACKEND_REQ_FD, new Uint8Array(0), {
      fds: [pair[1]],
      needReply: true,
    });
    nativeTest().mvn_test_close(pair[1]);
    this.#backendChannel = pair[0];
  }

  /** Reads one backend request header from the backend channel: its request code. */
  readBackendRequest(timeoutMs = 1000): number {
    const hdr = new Uint8Array(HEADER_SIZE);
    check(
      nativeTest().mvn_test_recv(this.#backendChannel, hdr, HEADER_SIZE, timeoutMs),
      "backend request",
    );
    return decodeHeader(hdr).request;
  }

  /** Notifies the backend that queue q has new buffers. */
  kickQueue(q: number): void {
    check(nativeTest().mvn_test_eventfd_write(this.kick[q]), "kick");
  }

  /** Interrupts the backend raised on queue q (0 when none within timeoutMs). */
  takeCalls(q: number, timeoutMs = 0): number {
    return Number(nativeTest().mvn_test_eventfd_read(this.call[q], timeoutMs));
  }

  /** Puts one frame (with a zero virtio-net header, or the first 10 bytes of one given as
   * `header`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) into the TX ring as
   * `pieces` descriptors, or as an indirect table; kicks. Returns the head. */
  sendFrame(
    frame: Uint8Array,
    opts: { pieces?: number; indirect?: boolean; at?: number; header?: Uint8Array } = {},
  ): number {
    const data = new Uint8Array(this.hdrLen + frame.length);
    if (opts.header) data.set(opts.header.subarray(0, 10), 0);
    data.set(frame, this.hdrLen);
    const addr = opts.at ?? this.allocGuest(data.length);
    this.mem.write(addr, data);
    const pieces = Math.min(opts.pieces ?? 1, data.length);
    const segs: Seg[] = [];
    const step = Math.ceil(data.length / pieces);
    for (let off = 0; off < data.length; off += step) {
      segs.push({ addr: addr + off, len: Math.min(step, data.length - off), write: false });
    }
    const ring = this.rings[TXQ];
    const head = opts.indirect
      ? ring.addIndirect(segs, this.allocGuest(16 * segs.length))
      : ring.addChain(segs);
    this.kickQueue(TXQ);
    return head;
  }

  /** Makes `count` receive buffers of `size` bytes available; kicks. */
  postRx(count: number, size: number): void {
    const ring = this.rings[RXQ];
    for (let i = 0; i < count; i++) {
      ring.addChain([{ addr: this.allocGuest(size), len: size, write: true }]);
    }
    this.kickQueue(RXQ);
  }

  /** Frames the device delivered, header stripped, merged buffers joined. Also returns each
   * frame's num_buffers. */
  readRx(): { frame: Uint8Array; numBuffers: number }[] {
    return this.readRxWithHeaders().map(({ frame, numBuffers }) => ({ frame, numBuffers }));
  }

  /** Like {@link readRx}, with each frame's virtio-net header (its first 10 bytes: flags,
   * gso_type, hdr_len, gso_size, csum_start, csum_offset). */
  readRxWithHeaders(): { frame: Uint8Array; header: Uint8Array; numBuffers: number }[] {
    const used = this.rings[RXQ].takeUsed();
    const out = [];
    const mrg = (this.features & bit(Feature.NET_MRG_RXBUF)) !== 0n;
    for (let i = 0; i < used.length; i++) {
      const first = gather(this.mem, used[i].segs, used[i].len);
      if (first.length < this.hdrLen) continue;
      const numBuffers = this.hdrLen === 12 ? new DataView(first.buffer).getUint16(10, true) : 1;
      const parts = [first.subarray(this.hdrLen)];
      if (mrg) {
        for (let k = 1; k < numBuffers && i + 1 < used.length; k++) {
          i++;
          parts.push(gather(this.mem, used[i].segs, used[i].len));
        }
      }
      out.push({ frame: concat(parts), header: first.slice(0, 10), numBuffers });
    }
    return out;
  }

  /** Closes the connection and releases guest RAM and eventfds (once: a second munmap of the
   * same range could unmap memory someone else mapped there since). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const t = nativeTest();
    t.mvn_test_close(this.fd);
    for (const fd of [...this.kick, ...this.call]) if (fd !== undefined) t.mvn_test_close(fd);
    if (this.#backendChannel >= 0) t.mvn_test_close(this.#backendChannel);
    this.mem.release();
    this.opts.pump?.();
  }
}

function gather(mem: GuestMemory, segs: Seg[], len: number): Uint8Array {
  const parts = [];
  let left = len;
  for (const s of segs) {
    if (left === 0) break;
    const n = Math.min(s.len, left);
    parts.push(mem.read(s.addr, n));
    left -= n;
  }
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A recognisable test frame of `len` bytes: bytes (seed + i) mod 256. */
export function testFrame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (seed + i) & 0xff;
  return f;
}
