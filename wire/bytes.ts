/**
 * Big-endian field access on byte arrays. Callers check bounds before calling: these helpers
 * exist so that offsets read as field names, not so that they validate.
 * @module
 */

/** Reads an unsigned 16-bit big-endian value at `off`. */
export function read16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

/** Reads an unsigned 32-bit big-endian value at `off`. */
export function read32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

/** Writes the low 16 bits of `v` big-endian at `off`. */
export function write16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

/** Writes the low 32 bits of `v` big-endian at `off`. */
export function write32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
