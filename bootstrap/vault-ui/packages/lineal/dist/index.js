// vault-plugin-rotation: the Vault UI imports Lineal's components and helpers by path; nothing is needed here.
export {};
