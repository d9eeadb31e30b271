import { InvalidAliasNameException, ValidationException } from '../errors/kms-errors';

/**
 * Alias name rules beyond the model's pattern (kms-protocol.md §4): the `alias/` prefix, no `:`
 * (the model allows it, the service does not [O]), something after the prefix, and `alias/aws/`
 * reserved for AWS managed keys. For the reserved prefix AWS's error is unverified; QKMS answers
 * InvalidAliasNameException, a modelled CreateAlias error every SDK knows.
 */
export function assertAliasName(name: string): void {
  if (!name.startsWith('alias/')) {
    throw new ValidationException('Alias must start with the prefix "alias/". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html');
  }
  if (name.includes(':')) throw new ValidationException(`${name} contains invalid characters for an alias`);
  if (name === 'alias/') throw new InvalidAliasNameException('Alias name must have at least one character after the prefix "alias/".');
  if (name.startsWith('alias/aws/')) throw new InvalidAliasNameException('Alias names that begin with alias/aws/ are reserved for AWS managed keys.');
}
