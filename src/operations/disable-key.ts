import { setKeyEnabled } from './set-key-enabled';

/** DisableKey: Enabled (or Disabled) to Disabled; not a key pending deletion. */
export const disableKey = setKeyEnabled(false);
