/**
 * `@weft/ai-sdk`: Weft sessions for the Vercel AI SDK.
 *
 * Browser: `useChat({ id: session.id, transport: new WeftChatTransport({ session }) })`.
 * Server: `createChatHandler({ url, respond: ({ messages, abortSignal }) => streamText({ model, messages: await convertToModelMessages(messages), abortSignal }) })`.
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
