// Text every store can hold and every log shows as it is: Postgres refuses NUL and cannot keep a
// lone UTF-16 surrogate, and the other C0/C1 controls and DEL have no place in names, references
// or user ids. One definition, used by the HTTP schemas, the token check and the dead letters.
const UNSAFE = '\\u0000-\\u001f\\u007f-\\u009f\\ud800-\\udfff';

/** JSON-Schema pattern for text free of them (ajv compiles patterns with the `u` flag, so a
 *  surrogate pair — an emoji — is one code point and passes; only a lone half is refused). */
export const SAFE_TEXT_PATTERN = `^[^${UNSAFE}]*$`;

const UNSAFE_CHAR = new RegExp(`[${UNSAFE}]`, 'u');
const UNSAFE_CHARS = new RegExp(`[${UNSAFE}]`, 'gu');

export function isSafeText(text: string): boolean {
  return !UNSAFE_CHAR.test(text);
}

/** The text with each unsafe character written as a `\uXXXX` escape, for storing or logging it. */
export function escapeUnsafe(text: string): string {
  return text.replace(UNSAFE_CHARS, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
