import type { NextFunction, Request, Response } from 'express';
import { callerIdentity } from './sts-caller-identity';
import { StsError } from './sts-errors';
import { locals } from './request-context';
import { sendXml, STS_NAMESPACE, xmlText } from './sts-xml';

/** The STS API version every SDK sends (`Version=2011-06-15`), the only one STS has. */
const VERSION = '2011-06-15';

/**
 * Action -> answer for the STS query protocol: the form body's Action and Version (STS API
 * reference, "Making query requests"). GetCallerIdentity is the only action: tools (Terraform's
 * AWS provider, the CDK) call it first to learn the account. It needs no permission in AWS (an
 * explicit deny does not stop it), so no policy is evaluated here either. Any other action is
 * AWS's InvalidAction. Errors go to sts-error-handler.
 */
export function stsDispatch() {
  return (req: Request, res: Response, next: NextFunction): void => {
    try {
      const params = new URLSearchParams((Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)).toString('utf8'));
      const action = single(params, 'Action');
      const version = single(params, 'Version');
      if (!action) throw StsError.missingAction();
      if (action !== 'GetCallerIdentity' || version !== VERSION) throw StsError.invalidAction(action, version);
      const l = locals(res);
      l.operation = action;
      sendXml(res, 200, getCallerIdentityResponse(l.principal!.principalArn, l.requestId));
    } catch (err) {
      next(err);
    }
  };
}

/** A parameter given once, or undefined; given twice it is ambiguous and refused. */
function single(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length > 1) throw StsError.repeated(name);
  return values[0];
}

function getCallerIdentityResponse(principalArn: string, requestId: string): string {
  const { UserId, Account, Arn } = callerIdentity(principalArn);
  return (
    `<GetCallerIdentityResponse xmlns="${STS_NAMESPACE}"><GetCallerIdentityResult>` +
    `<Arn>${xmlText(Arn)}</Arn><UserId>${xmlText(UserId)}</UserId><Account>${xmlText(Account)}</Account>` +
    `</GetCallerIdentityResult><ResponseMetadata><RequestId>${xmlText(requestId)}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`
  );
}
