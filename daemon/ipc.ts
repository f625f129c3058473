/**
 * A framed, versioned message channel over a Unix socket between the api and the dataplane.
 *
 * {@link Channel} sends and receives {@link Envelope}s, matches responses to requests by id,
 * times requests out, and delivers events. {@link encodeFrame} and {@link FrameDecoder} are the
 * pure framing layer (length prefix + JSON) and are tested on byte arrays.
 * @module
 */

import {
  type Envelope,
  type Event,
  type FailureCode,
  type Hello,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type Request,
  type Response,
  type ResponseByType,
} from "./protocol.ts";

const LENGTH_BYTES = 4;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Raised when a frame or the handshake is malformed. The channel is closed after it. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** Raised to the requester when the peer answered with a failure. */
export class RemoteError extends Error {
  override name = "RemoteError";
  constructor(readonly code: FailureCode, message: string) {
    super(message);
  }
}

/** Encodes one envelope as a frame. */
export function encodeFrame(msg: Envelope): Uint8Array {
  const body = encoder.encode(JSON.stringify(msg));
  if (body.length > MAX_FRAME_BYTES) {
    throw new ProtocolError(`frame of ${body.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  }
  const frame = new Uint8Array(LENGTH_BYTES + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, LENGTH_BYTES);
  return frame;
}

/** Accumulates bytes from a stream and yields whole envelopes. */
export class FrameDecoder {
  #buf = new Uint8Array(0);

  /** Appends bytes and returns the envelopes now complete. Throws {@link ProtocolError}. */
  push(chunk: Uint8Array): Envelope[] {
    const merged = new Uint8Array(this.#buf.length + chunk.length);
    merged.set(this.#buf);
    merged.set(chunk, this.#buf.length);
    const out: Envelope[] = [];
    let off = 0;
    while (merged.length - off >= LENGTH_BYTES) {
      const len = new DataView(merged.buffer, off).getUint32(0);
      if (len > MAX_FRAME_BYTES) {
        throw new ProtocolError(`frame length ${len} exceeds ${MAX_FRAME_BYTES}`);
      }
      if (merged.length - off - LENGTH_BYTES < len) break;
      const body = merged.subarray(off + LENGTH_BYTES, off + LENGTH_BYTES + len);
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(body));
      } catch (e) {
        throw new ProtocolError(`frame is not JSON: ${(e as Error).message}`);
      }
      if (
        typeof value !== "object" || value === null || typeof (value as Envelope).type !== "string"
      ) {
        throw new ProtocolError("frame is not an envelope (no type)");
      }
      out.push(value as Envelope);
      off += LENGTH_BYTES + len;
    }
    this.#buf = merged.slice(off);
    return out;
  }
}

/** Handles requests arriving on a channel (the dataplane side). */
export type RequestHandler = (req: Request) => Promise<Response>;

/** Options of a {@link Channel}. */
export interface ChannelOptions {
  role: Hello["role"];
  /** Answers incoming requests; omit on the side that only asks. */
  onRequest?: RequestHandler;
  onEvent?: (ev: Event) => void;
  /** Called once when the connection ends, for whatever reason. */
  onClose?: (reason: string) => void;
  /** Default time a request may take. */
  requestTimeoutMs?: number;
}

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Default time a request may take before it fails. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/** One connected, handshaken peer. */
export class Channel {
  #conn: Deno.Conn;
  #opts: ChannelOptions;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #closed = false;
  #writeChain: Promise<void> = Promise.resolve();
  /** The peer's hello. */
  readonly peer: Hello;

  private constructor(conn: Deno.Conn, opts: ChannelOptions, peer: Hello) {
    this.#conn = conn;
    this.#opts = opts;
    this.peer = peer;
  }

  /** Performs the handshake on a fresh connection and starts reading. */
  static async open(conn: Deno.Conn, opts: ChannelOptions): Promise<Channel> {
    const hello: Hello = {
      type: "Hello",
      version: PROTOCOL_VERSION,
      role: opts.role,
      pid: Deno.pid,
    };
    await writeAll(conn, encodeFrame(hello));
    const decoder = new FrameDecoder();
    const buf = new Uint8Array(64 * 1024);
    const backlog: Envelope[] = [];
    while (backlog.length === 0) {
      const n = await conn.read(buf);
      if (n === null) throw new ProtocolError("peer closed before hello");
      backlog.push(...decoder.push(buf.subarray(0, n)));
    }
    const first = backlog.shift()!;
    if (first.type !== "Hello") throw new ProtocolError(`expected Hello, got ${first.type}`);
    if (first.version !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        `peer speaks protocol version ${first.version}, this side ${PROTOCOL_VERSION}`,
      );
    }
    const ch = new Channel(conn, opts, first);
    for (const env of backlog) ch.#dispatch(env);
    ch.#readLoop(decoder, buf);
    return ch;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends a request and waits for its answer. */
  request<R extends Request>(
    req: R,
    timeoutMs = this.#opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
  ): Promise<ResponseByType[R["type"]]> {
    if (this.#closed) return Promise.reject(new ProtocolError("channel is closed"));
    const id = this.#nextId++;
    return new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ProtocolError(`${req.type} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#send({ type: "Request", id, request: req });
    }) as Promise<ResponseByType[R["type"]]>;
  }

  /** Sends an event (dataplane side). Dropped silently when the channel is closed. */
  emit(event: Event): void {
    if (!this.#closed) this.#send({ type: "Event", event });
  }

  /** Closes the connection; pending requests fail. */
  close(reason = "closed locally"): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer.
    }
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new ProtocolError(`channel closed (${reason}) before answer to request ${id}`));
    }
    this.#pending.clear();
    this.#opts.onClose?.(reason);
  }

  #send(env: Envelope): void {
    const frame = encodeFrame(env);
    this.#writeChain = this.#writeChain
      .then(() => writeAll(this.#conn, frame))
      .catch((e) => this.close(`write failed: ${(e as Error).message}`));
  }

  async #readLoop(decoder: FrameDecoder, buf: Uint8Array): Promise<void> {
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        for (const env of decoder.push(buf.subarray(0, n))) this.#dispatch(env);
      }
      this.close("peer closed the connection");
    } catch (e) {
      this.close((e as Error).message);
    }
  }

  #dispatch(env: Envelope): void {
    switch (env.type) {
      case "Response":
      case "Failure": {
        const p = this.#pending.get(env.id);
        if (!p) return;
        this.#pending.delete(env.id);
        clearTimeout(p.timer);
        if (env.type === "Response") p.resolve(env.response);
        else p.reject(new RemoteError(env.code, env.message));
        return;
      }
      case "Request":
        this.#answer(env.id, env.request);
        return;
      case "Event":
        this.#opts.onEvent?.(env.event);
        return;
      case "Hello":
        this.close("unexpected second Hello");
        return;
    }
  }

  async #answer(id: number, req: Request): Promise<void> {
    const handler = this.#opts.onRequest;
    if (!handler) {
      this.#send({ type: "Failure", id, code: "invalid", message: "this side takes no requests" });
      return;
    }
    try {
      this.#send({ type: "Response", id, response: await handler(req) });
    } catch (e) {
      const code: FailureCode = e instanceof RemoteError ? e.code : "failed";
      this.#send({ type: "Failure", id, code, message: (e as Error).message });
    }
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}
