/**
 * Deep freezing for validated config and verified claims: once checked at the edge, nothing downstream can
 * change them. Imports nothing of ours.
 */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
