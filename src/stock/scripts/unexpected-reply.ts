// The one error a binding throws of its own: the script answered something it never documents,
// i.e. script and binding are out of step. A bug to fix, never an outcome to handle.
export class UnexpectedScriptReply extends Error {
  override readonly name = 'UnexpectedScriptReply';

  constructor(script: string, reply: unknown) {
    super(`${script} returned an unexpected reply: ${JSON.stringify(reply)}`);
  }
}
