/**
 * The api's one error type: a gRPC status code and a message for the user.
 *
 * Validation, the store and the server all throw {@link ApiError}; the server hands it to
 * grpc-js as is. Anything else reaching a handler is a bug and answers INTERNAL.
 * @module
 */

import { status } from "@grpc/grpc-js";

/** gRPC status codes by name (re-exported so pure modules need not import grpc-js). */
export const Status: typeof status = status;

/** An error with the gRPC status it answers. The message names the field and the value. */
export class ApiError extends Error {
  override name = "ApiError";
  /** The gRPC status code. */
  readonly code: status;

  constructor(code: status, message: string) {
    super(message);
    this.code = code;
  }
}

/** INVALID_ARGUMENT for `field`, quoting `value`. */
export function invalid(field: string, value: unknown, why: string): ApiError {
  return new ApiError(status.INVALID_ARGUMENT, `${field}: ${JSON.stringify(value)} ${why}`);
}

/** NOT_FOUND for a `kind` identified by `ref`. */
export function notFound(kind: string, ref: string): ApiError {
  return new ApiError(status.NOT_FOUND, `${kind} ${JSON.stringify(ref)} not found`);
}
