/*
 * Arduino.h, a host shim: just enough of the Arduino API for boards/furuta/furuta.ino to
 * compile and run on the host, with hooks for a test to drive pins, interrupts, the clock
 * and the serial port. Not a simulator: interrupts run when the test changes a pin.
 */
#ifndef ARDUINO_SHIM_H
#define ARDUINO_SHIM_H

#include <stddef.h>
#include <stdint.h>

#define HIGH 1
#define LOW 0
#define INPUT 0
#define OUTPUT 1
#define INPUT_PULLUP 2
#define CHANGE 1
#define FALLING 2
#define RISING 3
#define A0 54
#define SHIM_PINS 70

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t val);
int digitalRead(uint8_t pin);
void analogWrite(uint8_t pin, int val);
int analogRead(uint8_t pin);
unsigned long micros(void);
unsigned long millis(void);
void noInterrupts(void);
void interrupts(void);
int digitalPinToInterrupt(uint8_t pin);
void attachInterrupt(int irq, void (*isr)(void), int mode);

class ShimSerial {
public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    size_t write(const uint8_t *data, size_t n);
};
extern ShimSerial Serial;

/* Test hooks. */
namespace shim {
extern uint32_t now_us;             /* what micros() returns (32 bits, wraps like a board) */
extern int mode[SHIM_PINS];         /* -1 until pinMode */
extern int level[SHIM_PINS];        /* output level, or input level set by the test */
extern int pwm[SHIM_PINS];          /* last analogWrite */
extern unsigned long baud;
extern int irq_mode[SHIM_PINS];     /* attachInterrupt mode per pin, 0 if none */
extern int interrupts_off;          /* noInterrupts nesting seen (must be back to 0) */
void reset(void);
void set_input(uint8_t pin, int value); /* drive an input; runs its CHANGE interrupt */
void rx_push(const uint8_t *data, size_t n);
size_t tx_take(uint8_t *out, size_t cap); /* bytes written to Serial since the last take */
}

#endif /* ARDUINO_SHIM_H */
