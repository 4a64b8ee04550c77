// Reading a Redis hash's optional fields: HGETALL leaves out a field never set, and the scripts
// write '' for one that is cleared (a sale's closedAt until it closes), so both mean "none".

/** The field as a number; undefined when it is absent or empty. */
export function optionalNumber(value: string | undefined): number | undefined {
  return value === undefined || value === '' ? undefined : Number(value);
}
