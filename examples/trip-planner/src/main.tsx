import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { App } from "./App.js";
import "./styles.css";

const config = (await (await fetch("/api/config")).json()) as { weftUrl: string; model: string; auth: boolean };
createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <App weftUrl={config.weftUrl} model={config.model} auth={config.auth} />
  </StrictMode>,
);
