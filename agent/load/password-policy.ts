/**
 * The strength policy for SIP passwords given in plain text (in YAML or in a host secret file).
 * Scanners try weak SIP credentials against every public 5060 within hours of an address going
 * live; a guessed password means calls to premium numbers billed to the owner (toll fraud).
 */
export const MIN_PASSWORD_LENGTH = 12;

/** Words that, once digits and punctuation are stripped, make a password guessable. */
const WEAK_WORDS = new Set([
  'password', 'passw', 'passwd', 'secret', 'asterisk', 'changeme', 'welcome', 'letmein', 'qwerty',
  'qwertyuiop', 'asdfghjkl', 'zxcvbnm', 'admin', 'administrator', 'voip', 'sip', 'phone', 'default',
  'abc', 'abcdef', 'abcdefgh', 'iloveyou', 'test', 'guest', 'user', 'pbx', 'freepbx', 'trixbox',
]);

const KEYBOARD_RUNS = ['0123456789', '1234567890', 'abcdefghijklmnopqrstuvwxyz', 'qwertyuiopasdfghjklzxcvbnm'];

/** Why `password` is too weak for extension `number`, or undefined if it passes. */
export function passwordWeakness(password: string, number: string): string | undefined {
  // Characters below space or DEL would break the secret file format and are never typed on a phone.
  if (/[\u0000-\u001f\u007f]/.test(password)) return 'contains control characters or line breaks';
  if (password.length < MIN_PASSWORD_LENGTH) return `is shorter than ${MIN_PASSWORD_LENGTH} characters`;
  if (/^[0-9]+$/.test(password)) return 'is digits only';
  if (password.includes(number)) return 'contains the extension number';
  if (new Set(password.toLowerCase()).size < 5) return 'uses fewer than 5 different characters';
  const letters = password.toLowerCase().replace(/[^a-z]/g, '');
  if (WEAK_WORDS.has(letters)) return 'is a well-known weak password';
  const lower = password.toLowerCase();
  if (KEYBOARD_RUNS.some((run) => run.includes(lower) || lower.length >= 12 && run.includes(lower.slice(0, 12))))
    return 'is a keyboard or alphabet sequence';
  return undefined;
}
