import lora from './lora.ts';

export default [lora];
