/**
 * `@weft/ai-sdk`: Weft sessions for the Vercel AI SDK.
 *
 * Browser: `useChat({ id: session.id, transport: new WeftChatTransport({ session }) })`.
 * Server: `createChatHandler({ url, respond: ({ messages, abortSignal }) => streamText({ model, messages: await convertToModelMessages(messages), abortSignal }) })`,
 * or, for an agent woken by Weft whichever client posts: `subscribeAgent({ url, id, webhook })`
 * and `createWakeHandler({ url, respond })` on that webhook route, with `WeftChatTransport({ session, api: null })`.
 * @module
 */
export { WeftChatTransport, type WeftChatTransportOptions, type ChatRouteRequest, type ChatRouteResponse } from "./transport.js";
export {
  createChatHandler,
  pipeToRun,
  sessionConversation,
  type ChatHandler,
  type ChatHandlerOptions,
  type RespondContext,
  type UIMessageSource,
} from "./agent.js";
export {
  createWakeHandler,
  subscribeAgent,
  WebhookVerifier,
  type SubscribeAgentOptions,
  type Wake,
  type WakeHandlerOptions,
  type WakeStream,
} from "./wake.js";
