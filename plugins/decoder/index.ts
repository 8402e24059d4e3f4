import llama from './llama.ts';

export default [llama];
