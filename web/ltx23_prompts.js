// Which graph queued which prompt, so node reports and the training panel only ever show on the graph whose
// run produced them. Node ids repeat across workflows (every example workflow's trainer is node 7), and ComfyUI
// sends a prompt's events to the page that queued it whatever graph is open by then.
//
// Every prompt this page queues passes through api.queuePrompt with the serialized graph, whose `id` is the
// workflow's id (kept when the workflow is saved and reopened). The map lives in sessionStorage, so a page
// reloaded mid-run still knows its prompts.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const STORE = "ltx23_trainer.prompt_graphs";
const KEEP = 200;
const promptGraphs = new Map(load());

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) ?? "[]");
  } catch {
    return [];
  }
}

function remember(promptId, workflowId) {
  promptGraphs.delete(promptId);
  promptGraphs.set(promptId, workflowId);
  while (promptGraphs.size > KEEP) promptGraphs.delete(promptGraphs.keys().next().value);
  try {
    sessionStorage.setItem(STORE, JSON.stringify([...promptGraphs]));
  } catch {
    // Storage full or disabled: the map still works until the page reloads.
  }
}

export function graphId(graph) {
  const g = graph ?? app.graph;
  return (g?.rootGraph ?? g)?.id ?? null;
}

export function graphOfPrompt(promptId) {
  return promptGraphs.get(promptId) ?? null;
}

let installed = false;

export function trackQueuedPrompts() {
  if (installed) return;
  installed = true;
  const queue = api.queuePrompt.bind(api);
  api.queuePrompt = async function (number, data, ...rest) {
    const res = await queue(number, data, ...rest);
    const id = data?.workflow?.id;
    if (res?.prompt_id && id) remember(res.prompt_id, id);
    return res;
  };
}
