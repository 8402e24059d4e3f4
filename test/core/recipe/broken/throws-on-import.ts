// A plugin module that fails while being imported (test fixture).
throw new Error('this plugin module is broken on purpose');
