import { keyArn } from '../domain/arn';
import { defaultKeyPolicy } from '../domain/policy';
import { assertNotPendingDeletion } from '../domain/key-state';
import { AlreadyExistsException, NotFoundException, UnsupportedOperationException } from '../errors/kms-errors';
import { authorize } from './authorize';
import { inRegion, type Operation } from './context';
import { checkTags } from './create-key';
import { checkNewKeyPolicy } from './key-policy';
import { keyMetadata } from './key-metadata';
import { primaryKey } from './multi-region';
import { Joi, keyIdSchema, regionSchema, tagsSchema } from './shared-schemas';

interface ReplicateKeyInput {
  KeyId: string;
  ReplicaRegion: string;
  Policy?: string;
  BypassPolicyLockoutSafetyCheck?: boolean;
  Description?: string;
  Tags?: Array<{ TagKey: string; TagValue: string }>;
}

const schema = Joi.object({
  KeyId: keyIdSchema.required(),
  ReplicaRegion: regionSchema.required(),
  Policy: Joi.string().min(1).max(131072),
  BypassPolicyLockoutSafetyCheck: Joi.boolean(),
  Description: Joi.string().min(0).max(8192).allow(''),
  Tags: tagsSchema,
});

/**
 * ReplicateKey, called in the primary's region: the key id's record in ReplicaRegion, sharing the
 * primary's HSM material (nothing is made on the token), with its own description, policy, tags
 * and state. The replica is Enabled at once: AWS shows it Creating for a few seconds while it
 * copies the material to another region; here the material is already where every region uses it.
 */
export const replicateKey: Operation<ReplicateKeyInput> = {
  schema,
  async handle(input, ctx) {
    const { key, arn } = await primaryKey(ctx, input.KeyId, 'kms:ReplicateKey');
    assertNotPendingDeletion(key.state, arn);
    // Before any view of it: the store keeps a view per region named, for the life of the process.
    if (!ctx.deps.config.regions.includes(input.ReplicaRegion)) {
      throw new UnsupportedOperationException(`Region ${input.ReplicaRegion} is not served by this gateway (QKMS_REGIONS: ${ctx.deps.config.regions.join(', ')}).`);
    }
    const replica = inRegion(ctx.deps, input.ReplicaRegion);
    const replicaArn = keyArn(replica.scope, key.keyId);
    await authorize(ctx, 'kms:CreateKey');
    const tags = checkTags(input.Tags ?? []);
    if (tags.length > 0) await authorize(ctx, 'kms:TagResource');
    if (input.Policy !== undefined) await checkNewKeyPolicy(input.Policy, ctx, { isBypassed: input.BypassPolicyLockoutSafetyCheck === true, keyId: key.keyId });
    const record = { ...key, createdAt: ctx.deps.clock(), description: input.Description ?? '', policy: input.Policy, state: 'Enabled' as const, deletionDate: undefined, pendingWindowDays: undefined, deletionStartedAt: undefined };
    const outcome = await replica.keys.insertReplica(record, tags);
    if (outcome === 'exists') throw new AlreadyExistsException(`${replicaArn} already exists`);
    if (outcome === 'gone') throw NotFoundException.keyDoesNotExist(arn);
    ctx.noteKey(arn);
    const created = await replica.keys.getKey(key.keyId);
    if (!created) throw NotFoundException.keyDoesNotExist(replicaArn); // deleted in between: a replica cannot be, within its waiting period
    return {
      ReplicaKeyMetadata: await keyMetadata(created, replica),
      ReplicaPolicy: created.policy ?? defaultKeyPolicy(ctx.deps.config.accountId),
      ReplicaTags: tags.map((t) => ({ TagKey: t.key, TagValue: t.value })),
    };
  },
};
