/* The host shim's implementation; see Arduino.h. */
#include "Arduino.h"

#include <string.h>

namespace shim {
uint32_t now_us;
int mode[SHIM_PINS];
int level[SHIM_PINS];
int pwm[SHIM_PINS];
unsigned long baud;
int irq_mode[SHIM_PINS];
int interrupts_off;
static void (*isr[SHIM_PINS])(void);
static int driven[SHIM_PINS]; /* the test has set this input */
static uint8_t rx[1 << 16];
static size_t rx_head, rx_tail;
static uint8_t tx[1 << 20];
static size_t tx_len;

void reset(void)
{
    int i;
    now_us = 0;
    for (i = 0; i < SHIM_PINS; i++) {
        mode[i] = -1;
        level[i] = LOW;
        pwm[i] = -1;
        irq_mode[i] = 0;
        isr[i] = NULL;
        driven[i] = 0;
    }
    baud = 0;
    interrupts_off = 0;
    rx_head = rx_tail = 0;
    tx_len = 0;
}

void set_input(uint8_t pin, int value)
{
    int old = level[pin];
    level[pin] = value;
    driven[pin] = 1;
    if (old != value && isr[pin] != NULL && irq_mode[pin] == CHANGE && interrupts_off == 0) {
        isr[pin]();
    }
}

void rx_push(const uint8_t *data, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        rx[rx_tail++ % sizeof rx] = data[i];
    }
}

size_t tx_take(uint8_t *out, size_t cap)
{
    size_t n = tx_len < cap ? tx_len : cap;
    memcpy(out, tx, n);
    memmove(tx, tx + n, tx_len - n);
    tx_len -= n;
    return n;
}

void set_isr(int pin, void (*f)(void), int m)
{
    isr[pin] = f;
    irq_mode[pin] = m;
}
} // namespace shim

ShimSerial Serial;

void pinMode(uint8_t pin, uint8_t m)
{
    shim::mode[pin] = m;
    if (m == INPUT_PULLUP && !shim::driven[pin]) {
        shim::level[pin] = HIGH; /* pulled up until the test drives it */
    }
}
void digitalWrite(uint8_t pin, uint8_t val) { shim::level[pin] = val; }
int digitalRead(uint8_t pin) { return shim::level[pin]; }
void analogWrite(uint8_t pin, int val) { shim::pwm[pin] = val; }
int analogRead(uint8_t pin) { return (int)((pin * 37u + shim::now_us) & 0x3FFu); }
unsigned long micros(void) { return shim::now_us; }
unsigned long millis(void) { return shim::now_us / 1000u; }
void noInterrupts(void) { shim::interrupts_off++; }
void interrupts(void) { shim::interrupts_off--; }
int digitalPinToInterrupt(uint8_t pin) { return pin; }
void attachInterrupt(int irq, void (*f)(void), int m) { shim::set_isr(irq, f, m); }

void ShimSerial::begin(unsigned long baud) { shim::baud = baud; }
int ShimSerial::available(void) { return (int)(shim::rx_tail - shim::rx_head); }
int ShimSerial::read(void)
{
    if (shim::rx_head == shim::rx_tail) return -1;
    return shim::rx[shim::rx_head++ % sizeof shim::rx];
}
size_t ShimSerial::write(const uint8_t *data, size_t n)
{
    size_t i;
    for (i = 0; i < n && shim::tx_len < sizeof shim::tx; i++) {
        shim::tx[shim::tx_len++] = data[i];
    }
    return i;
}
