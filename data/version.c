/* Placeholder translation unit until the data pipeline lands (keeps tpsc_data non-empty). */
int tpsc_data_placeholder(void);
int tpsc_data_placeholder(void) { return 0; }
