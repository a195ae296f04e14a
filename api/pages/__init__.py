"""The dashboard's HTML pages: server-rendered, readable without JavaScript, live with it."""
