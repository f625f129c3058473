/**
 * Workaround for the node:http2 abort of Deno 2.9.6 (denoland/deno#36788).
 *
 * Measured here with a Node grpc-js client against a grpc-js server on Deno 2.9.6: when the
 * *client* sends GOAWAY (closes its channel) on a connection that carried 128 or more streams,
 * nghttp2 inside Deno aborts the whole process (`free(): invalid pointer` or the assertion
 * `find_stream_on_goaway_func: stream->closed_next == NULL`, exit 134). 127 streams never
 * abort; 128 always do. A GOAWAY the *server* sends is harmless, whatever the stream count.
 * Connection age limits (`grpc.max_connection_age_ms`) do not help, because a fast client
 * passes 128 calls in well under any sensible age; `grpc.max_concurrent_streams` does not
 * either.
 *
 * So the server closes every connection itself, gracefully, after
 * {@link STREAMS_PER_CONNECTION} streams: `session.close()` sends GOAWAY, lets the streams in
 * flight finish, and the client transparently opens a new connection for its next call (grpc-js
 * clients on Node and on Deno honour it: 0 failed calls in 5 x 2000 and 2 x 2000 with 100 calls
 * in flight; 200 CreateNic started at once on one connection all succeed: the streams past the
 * limit are refused and retried on the next connection, and no abort follows although that
 * connection carried more than 128 streams: the server had closed it first). Dropping
 * connections at a hard limit instead was tried and measured worse: it fails every call in
 * flight on them.
 *
 * What this does not cover (measured, not solved): Deno grpc-js *clients* that each open a
 * connection, make one call and close it abort the server now and then whatever the stream
 * count, in the same nghttp2 assertion or with SIGSEGV (5 aborts in about 5,700 such
 * connections; Node clients: none in 1,100; CLI processes: none in 300). That is why the api runs
 * in its own process, which the root restarts.
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import type * as http2 from "node:http2";

/** Streams after which the server closes a connection gracefully (GOAWAY). */
export const STREAMS_PER_CONNECTION = 100;

/**
 * Installs the per-connection stream limit on every HTTP/2 listener of `server`. Call after
 * each `bindAsync` has completed. grpc-js keeps its listeners in a private map; the pinned
 * version (1.14.7) is checked by the test of this workaround.
 */
export function limitStreamsPerConnection(server: grpc.Server): void {
  const listeners = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> })
    .http2Servers;
  if (!(listeners instanceof Map)) {
    throw new Error("grpc-js internals changed: Server.http2Servers is gone; see http2_guard.ts");
  }
  for (const listener of listeners.keys()) {
    if (guarded.has(listener)) continue;
    guarded.add(listener);
    listener.on("session", (session: http2.ServerHttp2Session) => {
      let streams = 0;
      session.on("stream", () => {
        if (++streams === STREAMS_PER_CONNECTION && !session.closed) session.close();
      });
    });
  }
}

const guarded = new WeakSet<http2.Http2Server>();
