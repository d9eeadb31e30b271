import type { MaterialIntent } from '../domain/key-repository';

/** An intent as the stores record it: abandoned from the start when `abandonedAt` is given (a discard's). */
export type IntentInsert = Omit<MaterialIntent, 'intentId' | 'objects' | 'owner'> & { objectIds: Record<string, string>; abandonedAt?: Date };
