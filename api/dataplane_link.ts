/**
 * The api's connection to the dataplane process.
 *
 * It keeps reconnecting to the dataplane's control socket. On every (re)connect it pushes the
 * full desired state (read fresh from the store through `desiredState`), so a restarted
 * dataplane converges without anyone replaying history. Requests made while the dataplane is
 * away fail at once with {@link DataplaneUnavailable}: the caller decides (CreateNic undoes its
 * row; UpdateNetwork is repaired by the next sync).
 * @module
 */

import { Channel, RemoteError } from "../daemon/ipc.ts";
import type { DesiredNetwork, DesiredNic, NicCounters, NicStatus } from "../daemon/protocol.ts";
import type { Logger } from "../daemon/log.ts";

/** The dataplane is not connected (restarting, or not started yet). */
export class DataplaneUnavailable extends Error {
  override name = "DataplaneUnavailable";
}

/** Options of {@link DataplaneLink}. */
export interface DataplaneLinkOptions {
  socketPath: string;
  /** Reads the whole desired state; called on every (re)connect. */
  desiredState: () => { networks: DesiredNetwork[]; nics: DesiredNic[] };
  /** Called for every state report of a vNIC, including the ones a sync returns. */
  onNicStatus: (status: NicStatus) => void;
  log: Logger;
  /** Pause between connection attempts. */
  retryMs?: number;
}

/** Time a SyncState may take: a base plus a share per vNIC (a Worker start under load). */
const SYNC_BASE_TIMEOUT_MS = 60_000;
const SYNC_PER_NIC_TIMEOUT_MS = 1_000;
const DEFAULT_RETRY_MS = 100;

/** Keeps the api connected to the dataplane and forwards desired-state changes. */
export class DataplaneLink {
  #opts: DataplaneLinkOptions;
  #channel: Channel | null = null;
  #stopped = false;
  #synced = false;
  #waiters: Array<() => void> = [];
  #loop: Promise<void> | null = null;

  constructor(opts: DataplaneLinkOptions) {
    this.#opts = opts;
  }

  /** Starts connecting in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** True once a full state push has been accepted on the current connection. */
  get connected(): boolean {
    return this.#channel !== null && !this.#channel.closed && this.#synced;
  }

  /** Resolves when connected and synced, or rejects after `timeoutMs`. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        reject(new DataplaneUnavailable(`dataplane not connected within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push(done);
    });
  }

  /** Stops reconnecting and closes the connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#channel?.close("api stopping");
    await this.#loop;
  }

  /** Pushes the full state again (for example after a repair of the store). */
  async resync(): Promise<void> {
    const ch = this.#requireChannel();
    await this.#sync(ch);
  }

  upsertNetwork(network: DesiredNetwork): Promise<void> {
    return this.#call({ type: "UpsertNetwork", network }).then(() => {});
  }

  removeNetwork(id: string): Promise<void> {
    return this.#call({ type: "RemoveNetwork", id }).then(() => {});
  }

  /** Creates or updates a vNIC; resolves once its socket accepts connections. */
  async upsertNic(nic: DesiredNic, timeoutMs?: number): Promise<NicStatus> {
    const ch = this.#requireChannel();
    const r = await this.#wrap(ch.request({ type: "UpsertNic", nic }, timeoutMs));
    this.#opts.onNicStatus(r.status);
    return r.status;
  }

  removeNic(id: string): Promise<void> {
    return this.#call({ type: "RemoveNic", id }).then(() => {});
  }

  async nicCounters(id: string): Promise<NicCounters> {
    const ch = this.#requireChannel();
    return (await this.#wrap(ch.request({ type: "GetNicCounters", id }))).counters;
  }

  #requireChannel(): Channel {
    const ch = this.#channel;
    if (!ch || ch.closed || !this.#synced) {
      throw new DataplaneUnavailable("the dataplane is not connected (it may be restarting)");
    }
    return ch;
  }

  async #call(
    req:
      | { type: "UpsertNetwork"; network: DesiredNetwork }
      | { type: "RemoveNetwork"; id: string }
      | { type: "RemoveNic"; id: string },
  ): Promise<unknown> {
    const ch = this.#requireChannel();
    return await this.#wrap(ch.request(req));
  }

  async #wrap<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      if (e instanceof RemoteError) throw e;
      throw new DataplaneUnavailable((e as Error).message);
    }
  }

  async #sync(ch: Channel): Promise<void> {
    const state = this.#opts.desiredState();
    // Each vNIC the dataplane (re)starts is a Worker start; give a large state the time it needs.
    const timeoutMs = SYNC_BASE_TIMEOUT_MS + state.nics.length * SYNC_PER_NIC_TIMEOUT_MS;
    const r = await ch.request({ type: "SyncState", ...state }, timeoutMs);
    for (const s of r.nics) this.#opts.onNicStatus(s);
  }

  async #run(): Promise<void> {
    const { log } = this.#opts;
    const retryMs = this.#opts.retryMs ?? DEFAULT_RETRY_MS;
    let lastError = "";
    while (!this.#stopped) {
      let conn: Deno.Conn | null = null;
      try {
        conn = await Deno.connect({ transport: "unix", path: this.#opts.socketPath });
        const closed = Promise.withResolvers<string>();
        const ch = await Channel.open(conn, {
          role: "api",
          onEvent: (ev) => {
            if (ev.type === "NicStateChanged") this.#opts.onNicStatus(ev.status);
          },
          onClose: (reason) => closed.resolve(reason),
        });
        this.#channel = ch;
        await this.#sync(ch);
        this.#synced = true;
        lastError = "";
        log.info("dataplane connected and synced", { dataplanePid: ch.peer.pid });
        for (const w of this.#waiters.splice(0)) w();
        const reason = await closed.promise;
        this.#synced = false;
        this.#channel = null;
        if (!this.#stopped) log.warn("dataplane connection lost", { reason });
      } catch (e) {
        this.#synced = false;
        this.#channel?.close((e as Error).message);
        this.#channel = null;
        if (conn && !this.#channel) {
          try {
            conn.close();
          } catch {
            // Already closed by the failed handshake.
          }
        }
        const msg = (e as Error).message;
        if (msg !== lastError) log.debug("dataplane not reachable yet", { error: msg });
        lastError = msg;
      }
      if (!this.#stopped) await new Promise((r) => setTimeout(r, retryMs));
    }
  }
}
