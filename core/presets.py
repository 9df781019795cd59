"""The LLM presets: one row per OpenAI-compatible service kb knows by name (`[llm] provider`).

Adding a preset is one row here: every preset speaks the OpenAI API through `core.llm`, so a row
says only where the service lives, its usual model and the variable holding its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LlmPreset:
    """Where an OpenAI-compatible service lives, its usual model, and the variable holding its key."""

    base_url: str
    model: str
    key_env: str = ""  # empty: the service needs no key (a local server)
    label: str = ""  # what the name alone does not say, for the setting's description


LLM_PRESETS: Mapping[str, LlmPreset] = {
    "openai": LlmPreset(
        "https://api.openai.com/v1",
        "gpt-4o-mini",
        "OPENAI_API_KEY",
        "any OpenAI-compatible base_url",
    ),
    "deepseek": LlmPreset("https://api.deepseek.com/v1", "deepseek-chat", "DEEPSEEK_API_KEY"),
    "qwen": LlmPreset(
        "https://dashscope.aliyuncs.com/compatible-mode/v1",
        "qwen-plus",
        "DASHSCOPE_API_KEY",
        "DashScope",
    ),
    "glm": LlmPreset(
        "https://open.bigmodel.cn/api/paas/v4", "glm-4-flash", "ZHIPUAI_API_KEY", "Zhipu"
    ),
    "ollama": LlmPreset("http://localhost:11434/v1", "qwen2.5:7b"),
    "vllm": LlmPreset("http://localhost:8000/v1", ""),
    "llamacpp": LlmPreset("http://localhost:8080/v1", "local"),
}


NO_LLM = "none"  # extractive answers, offline: the one `[llm] provider` that is not a preset
