import { setKeyEnabled } from './set-key-enabled';

/** EnableKey: Disabled (or Enabled) to Enabled; not a key pending deletion. */
export const enableKey = setKeyEnabled(true);
