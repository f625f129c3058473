/**
 * The one error type of the wire layer. Parsers return it instead of throwing, so a malformed
 * frame from a guest is a value the caller counts, never an exception.
 * @module
 */

/** What was wrong with the bytes. */
export type WireErrorKind =
  /** The buffer ends before a header, field or declared length does. */
  | "truncated"
  /** A field holds a value the protocol forbids (a bad length, a reserved value). */
  | "malformed"
  /** A version field other than the one this parser reads. */
  | "bad_version"
  /** The checksum does not verify. */
  | "bad_checksum"
  /** Well-formed, but a variant this implementation does not handle. */
  | "unsupported";

/**
 * Why bytes were rejected: the protocol layer, the kind of fault and a human-readable detail
 * naming the offending value.
 *
 * @example
 * ```ts
 * const r = parseIpv4(bytes);
 * if (r instanceof WireError) counters.bump(`ipv4_${r.kind}`);
 * ```
 */
export class WireError {
  /** Builds an error; `detail` names the field and the value that was wrong. */
  constructor(
    readonly protocol: string,
    readonly kind: WireErrorKind,
    readonly detail: string,
  ) {}

  /** `protocol: kind: detail`. */
  toString(): string {
    return `${this.protocol}: ${this.kind}: ${this.detail}`;
  }
}
