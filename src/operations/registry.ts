import type { Operation } from './context';
import { createKey } from './create-key';
import { decrypt } from './decrypt';
import { describeKey } from './describe-key';
import { generateDataKey } from './generate-data-key';
import { listKeys } from './list-keys';
import { scheduleKeyDeletion } from './schedule-key-deletion';
import { disableKey, enableKey } from './set-key-enabled';

/** Every operation the gateway answers, by its exact API name (X-Amz-Target: TrentService.<name>). */
export const registry: ReadonlyMap<string, Operation> = new Map<string, Operation>([
  ['CreateKey', createKey],
  ['Decrypt', decrypt],
  ['DescribeKey', describeKey],
  ['DisableKey', disableKey],
  ['EnableKey', enableKey],
  ['GenerateDataKey', generateDataKey],
  ['ListKeys', listKeys],
  ['ScheduleKeyDeletion', scheduleKeyDeletion],
]);
